/**
 * SQLSTATEs the schema raises on purpose (SPEC §2.3) and the built-in ones it relies on.
 * Code compares against these names, never against string literals.
 */
export const SqlState = {
  /** Role boundary: a role tried something it was not granted. */
  InsufficientPrivilege: '42501',
  /** Append-only / immutability violation; the message starts with the invariant id. */
  AppendOnlyViolation: 'P0001',
  /** PostgreSQL 18 or newer required. */
  UnsupportedServerVersion: 'P7001',
  /** Completion refused: lease missing, expired, or held by another worker or token. */
  LeaseLost: 'P7002',
  /** Completion with a state other than DISPATCHED, RETRYABLE or FAILED. */
  InvalidCompletionState: 'P7003',
  PolicyInvalidTransition: 'P7101',
  PolicyDeleteForbidden: 'P7102',
  PolicyLastActive: 'P7103',
  /** Control inserted a policy that is not ACTIVE (history cannot be fabricated). */
  PolicyInsertNotActive: 'P7104',
  /** A policy checksum that is not a lowercase hex sha256. */
  PolicyChecksumFormat: 'P7105',
  /** Control supplied a policy's created_at/updated_at: the database sets them. */
  PolicyServerTime: 'P7106',
  RevocationTokenHashFormat: 'P7201',
  RevocationCertFingerprintFormat: 'P7202',
  /** Control supplied a revocation's revoked_at: the database sets it. */
  RevocationServerTime: 'P7203',
  /** revoked_by named someone other than the session's login. */
  RevocationAuthor: 'P7204',
  AttestationHashChain: 'P7301',
  /** The supplied record_hash differs from the one the database computes. */
  AttestationDatabaseHash: 'P7302',
  /** received_at infinite or outside [database time - 1 hour, database time + 5 minutes]. */
  AttestationReceivedAt: 'P7303',
  /** The stream belongs to another login (its writer). */
  AttestationStreamWriter: 'P7304',
  /** The item record disagrees with the ledger (0020 refuses to migrate). */
  ItemRecordInconsistent: 'P7400',
  /** The idempotency key is already used by a different instruction: one key, one payment. */
  IdempotencyKeyReused: 'P7401',
  /** The same (instruction, key) replayed with a different participant, rail_type or payload. */
  IdempotentReplayMismatch: 'P7402',
  /** Payload JSON larger than outbox_limits.max_payload_bytes. */
  PayloadTooLarge: 'P7403',
  /** Payload nested deeper than outbox_limits.max_payload_depth. */
  PayloadTooDeep: 'P7404',
  /** instruction_id, participant_id or idempotency_key is not bounded printable ASCII. */
  InvalidIdentifier: 'P7405',
  /** rail_type does not match the SYMPHONY_RAILS key pattern. */
  InvalidRailType: 'P7406',
  /** The producer's traceparent is not a W3C trace context. */
  InvalidTraceparent: 'P7407',
  /** Re-drive of an item that is not FAILED (queued, or DISPATCHED: it would pay twice). */
  RedriveNotFailed: 'P7501',
  /** Re-drive of an outbox item that does not exist. */
  RedriveUnknownItem: 'P7502',
  UniqueViolation: '23505',
  CheckViolation: '23514',
  ForeignKeyViolation: '23503',
  NotNullViolation: '23502',
  InvalidTextRepresentation: '22P02',
  /** A function argument is out of range (batch size, lease, retry delay, a limit's value). */
  InvalidParameterValue: '22023',
  /**
   * A schema lock (an idempotency key's, an attestation stream's) stayed held past its
   * bound (0025): transient, retry; if it persists, another session holds the key.
   */
  LockNotAvailable: '55P03',
} as const;

export type SqlStateCode = (typeof SqlState)[keyof typeof SqlState];

const SQLSTATE_FORMAT = /^[0-9A-Z]{5}$/;

/** The SQLSTATE of a pg error (or of an error wrapping one in `cause`), else undefined. */
export function sqlStateOf(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current && typeof current === 'object'; depth += 1) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && SQLSTATE_FORMAT.test(code)) return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

export function isSqlState(error: unknown, code: SqlStateCode | string): boolean {
  return sqlStateOf(error) === code;
}

/**
 * complete_outbox_attempt refused the outcome because this worker no longer holds the
 * lease: another worker owns the item now. Log and count it; never retry the completion.
 */
export class LeaseLostError extends Error {
  readonly code = SqlState.LeaseLost;

  constructor(
    readonly outboxId: string,
    readonly workerId: string,
    options?: { cause?: unknown },
  ) {
    super(
      `lease lost: outbox item ${outboxId} is no longer leased to worker ${workerId} ` +
        '(expired, repaired or reclaimed); its outcome was not recorded by this worker',
      options,
    );
    this.name = 'LeaseLostError';
  }
}

/**
 * SQLSTATE classes worth another try: connection loss, serialization/deadlock, resources,
 * shutdown, and a state that passes (55: a database not accepting connections during
 * maintenance, 55000; a lock not available, 55P03).
 */
const TRANSIENT_CLASSES = ['08', '40', '53', '55', '57'];

/**
 * True when the same statement may well succeed if sent again: the connection dropped
 * (no SQLSTATE at all, e.g. ECONNRESET), or the server reported a transient condition.
 * A data or privilege error (22xxx, 23xxx, 42xxx, P7xxx) will fail the same way every time.
 */
export function isTransientDatabaseError(error: unknown): boolean {
  const state = sqlStateOf(error);
  return state === undefined || TRANSIENT_CLASSES.includes(state.slice(0, 2));
}
