/**
 * The one place that calls the outbox SQL functions: one typed wrapper per function.
 * Callers get camelCase objects; ids stay strings (uuid, and bigint sequence ids, which
 * could exceed Number.MAX_SAFE_INTEGER); counts become numbers.
 */
import { isSqlState, LeaseLostError, SqlState } from './errors.ts';
import type pg from 'pg';
import type { Queryable } from './pool.ts';

export interface EnqueueRequest {
  instructionId: string;
  participantId: string;
  idempotencyKey: string;
  railType: string;
  /** Must be a JSON object; anything else is refused by the schema (23514). */
  payload: Record<string, unknown>;
  /** The producer's W3C trace context; every dispatch of the item continues that trace. */
  traceparent?: string | null;
}

export interface EnqueueResult {
  outboxId: string;
  sequenceId: string;
  createdAt: Date;
  /** 'PENDING' while queued, else the terminal attempt's state ('DISPATCHED' or 'FAILED'). */
  state: string;
}

export interface ClaimedItem {
  outboxId: string;
  instructionId: string;
  participantId: string;
  sequenceId: string;
  idempotencyKey: string;
  railType: string;
  payload: Record<string, unknown>;
  attemptCount: number;
  leaseToken: string;
  leaseExpiresAt: Date;
  createdAt: Date;
  /** The producer's W3C trace context given at enqueue, if any. */
  traceparent: string | null;
}

export type CompletionState = 'DISPATCHED' | 'RETRYABLE' | 'FAILED';

export interface Completion {
  outboxId: string;
  leaseToken: string;
  state: CompletionState;
  railReference?: string | null;
  railCode?: string | null;
  errorCode?: string | null;
  errorMessage?: string | null;
  latencyMs?: number | null;
  /** Delay before a RETRYABLE item is due again; the schema enforces at least 1 second. */
  retryDelaySeconds?: number | null;
}

export interface CompletionResult {
  attemptNo: number;
  /** May differ from the requested state: RETRYABLE at the retry ceiling becomes FAILED. */
  state: CompletionState;
}

export interface RepairedItem {
  outboxId: string;
  attemptNo: number;
}

export interface LeasedItemRef {
  outboxId: string;
  leaseToken: string;
}

export interface QueueStats {
  pending: number;
  /** Unleased and next_attempt_at has passed: what a claim would take now. */
  due: number;
  /** Under a lease, live or expired. */
  leased: number;
  /** Leases past their expiry, waiting for repair (claim never takes them directly). */
  expiredLeases: number;
  oldestDueAgeSeconds: number | null;
}

export async function enqueuePaymentOutbox(
  db: Queryable,
  request: EnqueueRequest,
): Promise<EnqueueResult> {
  const { rows } = await db.query<{
    outbox_id: string;
    sequence_id: string;
    created_at: Date;
    state: string;
  }>(
    'SELECT outbox_id, sequence_id, created_at, state FROM public.enqueue_payment_outbox($1, $2, $3, $4, $5::jsonb, $6)',
    // Serialised here: pg would turn a JS array into a Postgres array literal, not JSON.
    [
      request.instructionId,
      request.participantId,
      request.idempotencyKey,
      request.railType,
      JSON.stringify(request.payload),
      request.traceparent ?? null,
    ],
  );
  const row = singleRow(rows, 'enqueue_payment_outbox');
  return {
    outboxId: row.outbox_id,
    sequenceId: row.sequence_id,
    createdAt: row.created_at,
    state: row.state,
  };
}

interface ClaimedRow {
  outbox_id: string;
  instruction_id: string;
  participant_id: string;
  sequence_id: string;
  idempotency_key: string;
  rail_type: string;
  payload: Record<string, unknown>;
  attempt_count: number;
  lease_token: string;
  lease_expires_ms: number;
  created_ms: number;
  traceparent: string | null;
}

/**
 * Leases up to batchSize due, unleased items of the given rail types to workerId. An
 * expired lease is never taken here: repairExpiredLeases must requeue it first. Items of
 * other rail types stay queued for a worker that serves them. A batch size of 0 claims
 * nothing without a round trip.
 */
export async function claimOutboxBatch(
  db: Queryable,
  options: {
    batchSize: number;
    workerId: string;
    leaseSeconds: number;
    /** The rail types this worker has adapters for. */
    railTypes: readonly string[];
  },
): Promise<ClaimedItem[]> {
  if (options.batchSize === 0) return [];
  const { rows } = await db.query<ClaimedRow>(
    // The two instants as whole epoch milliseconds (what a Date holds): a number parses in a
    // fraction of the time a timestamp's text takes, twice per claimed item (issue 9).
    `SELECT outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
            payload, attempt_count, lease_token,
            floor(extract(epoch FROM lease_expires_at) * 1000)::float8 AS lease_expires_ms,
            floor(extract(epoch FROM created_at) * 1000)::float8 AS created_ms, traceparent
       FROM public.claim_outbox_batch($1, $2, $3, $4::text[])`,
    [options.batchSize, options.workerId, options.leaseSeconds, options.railTypes],
  );
  return rows.map((row) => ({
    outboxId: row.outbox_id,
    instructionId: row.instruction_id,
    participantId: row.participant_id,
    sequenceId: row.sequence_id,
    idempotencyKey: row.idempotency_key,
    railType: row.rail_type,
    payload: row.payload,
    attemptCount: row.attempt_count,
    leaseToken: row.lease_token,
    leaseExpiresAt: new Date(row.lease_expires_ms),
    createdAt: new Date(row.created_ms),
    traceparent: row.traceparent,
  }));
}

/** How long the warm-up may wait for a lock or run before it gives up on warming. */
const WARM_UP_LOCK_TIMEOUT_MS = 200;
const WARM_UP_STATEMENT_TIMEOUT_MS = 1_000;

/**
 * Runs `warm` on a new connection inside a transaction that is always rolled back, under
 * short lock and statement timeouts, so the backend compiles a function before it matters
 * and nothing it did is kept. Best effort: a SQL error (a lock held at start, say) leaves
 * the compiling to the first real call; only a broken connection rejects.
 */
async function warmUpRolledBack(
  // One connection, not a pool: BEGIN, the call and ROLLBACK must share it.
  client: pg.PoolClient | pg.Client,
  warm: () => Promise<unknown>,
): Promise<void> {
  try {
    // One round trip for the three (a simple query may hold several statements): every
    // connection of a starting worker runs this, all at once.
    await client.query(
      `BEGIN; SET LOCAL lock_timeout = ${WARM_UP_LOCK_TIMEOUT_MS}; SET LOCAL statement_timeout = ${WARM_UP_STATEMENT_TIMEOUT_MS}`,
    );
    await warm();
  } catch {
    // Not warmed; nothing was kept either way.
  } finally {
    await client.query('ROLLBACK');
  }
}

/**
 * Runs one claim of one item on a new connection, rolled back, so nothing is leased: the
 * backend compiles claim_outbox_batch and loads the queue's catalog entries now (about 20 ms
 * on a fresh backend, 1 ms once warm) instead of inside the first real claim, where those
 * milliseconds are delivery latency (issue 9). A claim of one due item is an index probe at
 * any queue size (a claim for a rail type no item has would scan every due row looking for
 * one).
 */
export function warmUpClaims(
  client: pg.PoolClient | pg.Client,
  options: { workerId: string; railTypes: readonly string[] },
): Promise<void> {
  return warmUpRolledBack(client, () =>
    claimOutboxBatch(client, { ...options, batchSize: 1, leaseSeconds: 1 }),
  );
}

/**
 * Runs complete_outbox_batch on nothing, rolled back: the backend compiles the function and
 * plans its statements now (about 15 ms on a fresh backend) rather than inside the first
 * real batch of outcomes, whose commit is then that much later (issue 9). An empty batch
 * records nothing and fences nothing.
 */
export function warmUpCompletions(
  client: pg.PoolClient | pg.Client,
  options: { workerId: string },
): Promise<void> {
  return warmUpRolledBack(client, () =>
    client.query(`SELECT count(*) FROM public.complete_outbox_batch($1, '[]'::jsonb)`, [
      options.workerId,
    ]),
  );
}

/** Records one outcome under the lease. Throws LeaseLostError (P7002) when the lease is gone. */
export async function completeOutboxAttempt(
  db: Queryable,
  workerId: string,
  completion: Completion,
): Promise<CompletionResult> {
  try {
    const { rows } = await db.query<{ attempt_no: number; state: CompletionState }>(
      `SELECT attempt_no, state::text AS state
         FROM public.complete_outbox_attempt($1, $2, $3, $4::public.outbox_attempt_state, $5, $6, $7, $8, $9, $10)`,
      [
        completion.outboxId,
        completion.leaseToken,
        workerId,
        completion.state,
        completion.railReference ?? null,
        completion.railCode ?? null,
        completion.errorCode ?? null,
        completion.errorMessage ?? null,
        completion.latencyMs ?? null,
        completion.retryDelaySeconds ?? null,
      ],
    );
    const row = singleRow(rows, 'complete_outbox_attempt');
    return { attemptNo: row.attempt_no, state: row.state };
  } catch (error) {
    if (isSqlState(error, SqlState.LeaseLost)) {
      throw new LeaseLostError(completion.outboxId, workerId, { cause: error });
    }
    throw error;
  }
}

/** Requeues (or, at the retry ceiling, fails) up to batchSize items whose lease expired. */
export async function repairExpiredLeases(
  db: Queryable,
  options: { batchSize: number; workerId: string },
): Promise<RepairedItem[]> {
  const { rows } = await db.query<{ outbox_id: string; attempt_no: number }>(
    'SELECT outbox_id, attempt_no FROM public.repair_expired_leases($1, $2)',
    [options.batchSize, options.workerId],
  );
  return rows.map((row) => ({ outboxId: row.outbox_id, attemptNo: row.attempt_no }));
}

/** Hands back undispatched items still leased to workerId; returns the ids actually released. */
export async function releaseOutboxLeases(
  db: Queryable,
  workerId: string,
  items: readonly LeasedItemRef[],
): Promise<string[]> {
  if (items.length === 0) return [];
  const { rows } = await db.query<{ outbox_id: string }>(
    'SELECT outbox_id FROM public.release_outbox_leases($1, $2::uuid[], $3::uuid[])',
    [workerId, items.map((item) => item.outboxId), items.map((item) => item.leaseToken)],
  );
  return rows.map((row) => row.outbox_id);
}

/** Earliest next_attempt_at among unleased items, or null when there are none. */
export async function outboxNextAttemptAt(db: Queryable): Promise<Date | null> {
  const { rows } = await db.query<{ next_attempt_at: Date | null }>(
    'SELECT public.outbox_next_attempt_at() AS next_attempt_at',
  );
  return rows[0]?.next_attempt_at ?? null;
}

export async function outboxQueueStats(db: Queryable): Promise<QueueStats> {
  const { rows } = await db.query<{
    pending: string;
    due: string;
    leased: string;
    expired_leases: string;
    oldest_due_age_seconds: number | null;
  }>(
    'SELECT pending, due, leased, expired_leases, oldest_due_age_seconds FROM public.outbox_queue_stats()',
  );
  const row = singleRow(rows, 'outbox_queue_stats');
  return {
    pending: Number(row.pending),
    due: Number(row.due),
    leased: Number(row.leased),
    expiredLeases: Number(row.expired_leases),
    oldestDueAgeSeconds: row.oldest_due_age_seconds,
  };
}

export interface RailQueueStats {
  railType: string;
  pending: number;
  due: number;
  oldestDueAgeSeconds: number | null;
}

/** Queue depth per rail type (every rail type with at least one queued item). */
export async function outboxQueueStatsByRail(db: Queryable): Promise<RailQueueStats[]> {
  const { rows } = await db.query<{
    rail_type: string;
    pending: string;
    due: string;
    oldest_due_age_seconds: number | null;
  }>(
    'SELECT rail_type, pending, due, oldest_due_age_seconds FROM public.outbox_queue_stats_by_rail()',
  );
  return rows.map((row) => ({
    railType: row.rail_type,
    pending: Number(row.pending),
    due: Number(row.due),
    oldestDueAgeSeconds: row.oldest_due_age_seconds,
  }));
}

/**
 * The fleet's shared queue sample, as of sampledAt (see 0031). Exact while the queue is
 * small; once its heap passes the sample's bound (0043) the larger counts are estimates, and
 * `estimated` says so.
 */
export interface QueueSample {
  sampledAt: Date;
  stats: QueueStats;
  byRail: RailQueueStats[];
  estimated: boolean;
}

/**
 * The fleet's queue sample (outbox_queue_sample): a new one is taken by this call only if
 * the stored one is older than maxAgeMs and no other worker is taking one; otherwise one row
 * is read. Null only before the very first sample exists. `exactPages`: the queue heap size
 * up to which a new sample counts exactly (unless given, the function's default: 2,000 pages).
 */
export async function outboxQueueSample(
  db: Queryable,
  maxAgeMs: number,
  exactPages?: number,
): Promise<QueueSample | null> {
  const { rows } = await db.query<{
    sampled_at: Date;
    pending: string;
    due: string;
    leased: string;
    expired_leases: string;
    oldest_due_age_seconds: number | null;
    by_rail: {
      rail_type: string;
      pending: number;
      due: number;
      oldest_due_age_seconds: number | null;
    }[];
    estimated: boolean;
  }>(
    `SELECT sampled_at, pending, due, leased, expired_leases, oldest_due_age_seconds, by_rail,
            estimated
       FROM public.outbox_queue_sample($1${exactPages === undefined ? '' : ', $2'})`,
    exactPages === undefined ? [maxAgeMs] : [maxAgeMs, exactPages],
  );
  const row = rows[0];
  if (!row) return null;
  return {
    sampledAt: row.sampled_at,
    stats: {
      pending: Number(row.pending),
      due: Number(row.due),
      leased: Number(row.leased),
      expiredLeases: Number(row.expired_leases),
      oldestDueAgeSeconds: row.oldest_due_age_seconds,
    },
    byRail: row.by_rail.map((rail) => ({
      railType: rail.rail_type,
      pending: Number(rail.pending),
      due: Number(rail.due),
      oldestDueAgeSeconds: rail.oldest_due_age_seconds,
    })),
    estimated: row.estimated,
  };
}

/** The operator limits (outbox_limits), which no runtime session can change. */
export interface OutboxLimits {
  retryCeiling: number;
  maxLeaseSeconds: number;
  maxRetryDelaySeconds: number;
  maxPayloadBytes: number;
  maxPayloadDepth: number;
  updatedAt: Date;
}

export const OUTBOX_LIMIT_NAMES = [
  'retry_ceiling',
  'max_lease_seconds',
  'max_retry_delay_seconds',
  'max_payload_bytes',
  'max_payload_depth',
] as const;
export type OutboxLimitName = (typeof OUTBOX_LIMIT_NAMES)[number];

export async function outboxCurrentLimits(db: Queryable): Promise<OutboxLimits> {
  const { rows } = await db.query<{
    retry_ceiling: number;
    max_lease_seconds: number;
    max_retry_delay_seconds: number;
    max_payload_bytes: number;
    max_payload_depth: number;
    updated_at: Date;
  }>(
    `SELECT retry_ceiling, max_lease_seconds, max_retry_delay_seconds, max_payload_bytes,
            max_payload_depth, updated_at
       FROM public.outbox_current_limits()`,
  );
  const row = singleRow(rows, 'outbox_current_limits');
  return {
    retryCeiling: row.retry_ceiling,
    maxLeaseSeconds: row.max_lease_seconds,
    maxRetryDelaySeconds: row.max_retry_delay_seconds,
    maxPayloadBytes: row.max_payload_bytes,
    maxPayloadDepth: row.max_payload_depth,
    updatedAt: row.updated_at,
  };
}

/** Changes one limit as symphony_control; audited with the session user and the reason. */
export async function setOutboxLimit(
  db: Queryable,
  change: { name: OutboxLimitName; value: number; reason: string },
): Promise<{ name: string; oldValue: number; newValue: number }> {
  const { rows } = await db.query<{ name: string; old_value: number; new_value: number }>(
    'SELECT name, old_value, new_value FROM public.set_outbox_limit($1, $2, $3)',
    [change.name, change.value, change.reason],
  );
  const row = singleRow(rows, 'set_outbox_limit');
  return { name: row.name, oldValue: row.old_value, newValue: row.new_value };
}

export interface BatchCompletionResult {
  outboxId: string;
  /** Null when the lease was lost: nothing was recorded for this item. */
  attemptNo: number | null;
  /** The recorded state (RETRYABLE at the retry ceiling becomes FAILED); null when the lease was lost. */
  state: CompletionState | null;
  /** This worker no longer held the lease (the single completion's P7002), reported per item. */
  leaseLost: boolean;
}

/**
 * Records many outcomes of workerId in one transaction, each fenced by its lease like
 * completeOutboxAttempt. A lost lease is reported per item (leaseLost), not thrown; an
 * invalid state anywhere fails the whole call with P7003. Results are in input order.
 */
export async function completeOutboxBatch(
  db: Queryable,
  workerId: string,
  completions: readonly Completion[],
): Promise<BatchCompletionResult[]> {
  if (completions.length === 0) return [];
  // An absent key reads as NULL in the function (->>), so none is sent: a DISPATCHED outcome
  // is about half the bytes, which the server parses and the socket copies (issue 9).
  const outcomes = completions.map((completion) => ({
    outbox_id: completion.outboxId,
    lease_token: completion.leaseToken,
    state: completion.state,
    rail_reference: completion.railReference ?? undefined,
    rail_code: completion.railCode ?? undefined,
    error_code: completion.errorCode ?? undefined,
    error_message: completion.errorMessage ?? undefined,
    latency_ms: completion.latencyMs ?? undefined,
    retry_delay_seconds: completion.retryDelaySeconds ?? undefined,
  }));
  const { rows } = await db.query<{
    outbox_id: string;
    attempt_no: number | null;
    state: CompletionState | null;
    lease_lost: boolean;
  }>(
    `SELECT outbox_id, attempt_no, state::text AS state, lease_lost
       FROM public.complete_outbox_batch($1, $2::jsonb)`,
    [workerId, JSON.stringify(outcomes)],
  );
  return inInputOrder(rows, completions, 'complete_outbox_batch').map((row) => ({
    outboxId: row.outbox_id,
    attemptNo: row.attempt_no,
    state: row.state,
    leaseLost: row.lease_lost,
  }));
}

/**
 * enqueuePaymentOutbox for many items in one call and one transaction, with the same
 * idempotency and gap-free per-participant sequencing. One result per request, in order;
 * a repeated key (in the batch or already stored) returns the existing item.
 */
export async function enqueuePaymentOutboxBatch(
  db: Queryable,
  requests: readonly EnqueueRequest[],
): Promise<EnqueueResult[]> {
  if (requests.length === 0) return [];
  const items = requests.map((request) => ({
    instruction_id: request.instructionId,
    participant_id: request.participantId,
    idempotency_key: request.idempotencyKey,
    rail_type: request.railType,
    payload: request.payload,
    ...(request.traceparent ? { traceparent: request.traceparent } : {}),
  }));
  const { rows } = await db.query<{
    outbox_id: string;
    sequence_id: string;
    created_at: Date;
    state: string;
  }>(
    'SELECT outbox_id, sequence_id, created_at, state FROM public.enqueue_payment_outbox_batch($1::jsonb)',
    [JSON.stringify(items)],
  );
  return inInputOrder(rows, requests, 'enqueue_payment_outbox_batch').map((row) => ({
    outboxId: row.outbox_id,
    sequenceId: row.sequence_id,
    createdAt: row.created_at,
    state: row.state,
  }));
}

function inInputOrder<T>(rows: T[], inputs: readonly unknown[], functionName: string): T[] {
  if (rows.length !== inputs.length) {
    throw new Error(
      `${functionName} returned ${rows.length} rows for ${inputs.length} inputs; expected one per input`,
    );
  }
  return rows;
}

function singleRow<T>(rows: T[], functionName: string): T {
  const row = rows[0];
  if (rows.length !== 1 || row === undefined) {
    throw new Error(`${functionName} returned ${rows.length} rows where exactly one was expected`);
  }
  return row;
}
