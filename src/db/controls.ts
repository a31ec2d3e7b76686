/**
 * Typed wrappers of the operator control functions (0022): kill switches, dead letters and
 * re-drives. Every change is made as symphony_control and audited by the database with the
 * login (session_user), the server time and the reason.
 */
import type { Queryable } from './pool.ts';

export const PAUSE_SCOPES = ['all', 'rail', 'participant'] as const;
export type PauseScope = (typeof PAUSE_SCOPES)[number];

export interface Pause {
  scope: PauseScope;
  /** '*' for scope all, else the rail type or participant id. */
  target: string;
  reason: string;
  pausedBy: string;
  pausedAt: Date;
}

export interface PauseChange extends Pause {
  /** False when the scope was already paused: nothing changed and nothing was audited. */
  changed: boolean;
}

export interface ResumeChange {
  scope: PauseScope;
  target: string;
  /** False when nothing was paused there: nothing changed and nothing was audited. */
  changed: boolean;
  /** When the lifted pause began (null when nothing was paused). */
  pausedSince: Date | null;
}

interface PauseRow {
  scope: PauseScope;
  target: string;
  reason: string;
  paused_by: string;
  paused_at: Date;
}

const toPause = (row: PauseRow): Pause => ({
  scope: row.scope,
  target: row.target,
  reason: row.reason,
  pausedBy: row.paused_by,
  pausedAt: row.paused_at,
});

/** Stops every worker from claiming what the scope covers, from its next claim on. */
export async function pauseDispatch(
  db: Queryable,
  request: { scope: PauseScope; target: string | null; reason: string },
): Promise<PauseChange> {
  const { rows } = await db.query<PauseRow & { changed: boolean }>(
    `SELECT scope, target, changed, reason, paused_by, paused_at
       FROM public.pause_dispatch($1, $2, $3)`,
    [request.scope, request.target, request.reason],
  );
  const row = single(rows, 'pause_dispatch');
  return { ...toPause(row), changed: row.changed };
}

/** Lifts a pause and wakes the workers. */
export async function resumeDispatch(
  db: Queryable,
  request: { scope: PauseScope; target: string | null; reason: string },
): Promise<ResumeChange> {
  const { rows } = await db.query<{
    scope: PauseScope;
    target: string;
    changed: boolean;
    paused_since: Date | null;
  }>('SELECT scope, target, changed, paused_since FROM public.resume_dispatch($1, $2, $3)', [
    request.scope,
    request.target,
    request.reason,
  ]);
  const row = single(rows, 'resume_dispatch');
  return {
    scope: row.scope,
    target: row.target,
    changed: row.changed,
    pausedSince: row.paused_since,
  };
}

export async function activePauses(db: Queryable): Promise<Pause[]> {
  const { rows } = await db.query<PauseRow>(
    'SELECT scope, target, reason, paused_by, paused_at FROM public.outbox_active_pauses()',
  );
  return rows.map(toPause);
}

/** A dead letter: an item whose latest terminal attempt is FAILED and was not re-driven. */
export interface FailedItem {
  outboxId: string;
  instructionId: string;
  participantId: string;
  sequenceId: string;
  railType: string;
  failedAttemptId: string;
  /** Attempts recorded for the item so far (the FAILED one's attempt number). */
  attempts: number;
  /** 1 for the item's first life, +1 per re-drive. */
  drive: number;
  errorCode: string | null;
  errorMessage: string | null;
  failedAt: Date;
}

/** Oldest failure first; at most `limit` (1..10000) items. */
export async function listFailedItems(
  db: Queryable,
  filter: { railType?: string | null; errorCode?: string | null; limit: number },
): Promise<FailedItem[]> {
  const { rows } = await db.query<{
    outbox_id: string;
    instruction_id: string;
    participant_id: string;
    sequence_id: string;
    rail_type: string;
    failed_attempt_id: string;
    attempts: number;
    drive: number;
    error_code: string | null;
    error_message: string | null;
    failed_at: Date;
  }>(
    `SELECT outbox_id, instruction_id, participant_id, sequence_id, rail_type, failed_attempt_id,
            attempts, drive, error_code, error_message, failed_at
       FROM public.outbox_failed_items($1, $2, $3)`,
    [filter.railType ?? null, filter.errorCode ?? null, filter.limit],
  );
  return rows.map((row) => ({
    outboxId: row.outbox_id,
    instructionId: row.instruction_id,
    participantId: row.participant_id,
    sequenceId: row.sequence_id,
    railType: row.rail_type,
    failedAttemptId: row.failed_attempt_id,
    attempts: row.attempts,
    drive: row.drive,
    errorCode: row.error_code,
    errorMessage: row.error_message,
    failedAt: row.failed_at,
  }));
}

export interface RedriveResult {
  outboxId: string;
  failedAttemptId: string;
  /** False when this failure had already been re-driven: nothing was done. */
  redriven: boolean;
  /** The drive the (earlier or new) re-drive started. */
  drive: number;
  redrivenAt: Date;
  redrivenBy: string;
}

/**
 * Queues a FAILED item again with the same idempotency key. Refused with P7501 when the
 * item is not FAILED (queued or DISPATCHED) and P7502 when it does not exist.
 */
export async function redriveOutboxItem(
  db: Queryable,
  request: { outboxId: string; reason: string },
): Promise<RedriveResult> {
  const { rows } = await db.query<{
    outbox_id: string;
    failed_attempt_id: string;
    redriven: boolean;
    drive: number;
    redriven_at: Date;
    redriven_by: string;
  }>(
    `SELECT outbox_id, failed_attempt_id, redriven, drive, redriven_at, redriven_by
       FROM public.redrive_outbox_item($1, $2)`,
    [request.outboxId, request.reason],
  );
  const row = single(rows, 'redrive_outbox_item');
  return {
    outboxId: row.outbox_id,
    failedAttemptId: row.failed_attempt_id,
    redriven: row.redriven,
    drive: row.drive,
    redrivenAt: row.redriven_at,
    redrivenBy: row.redriven_by,
  };
}

function single<T>(rows: T[], functionName: string): T {
  const row = rows[0];
  if (rows.length !== 1 || row === undefined) {
    throw new Error(`${functionName} returned ${rows.length} rows where exactly one was expected`);
  }
  return row;
}

/** A rail's operator settings and its fleet-wide state (outbox_rail_overview). */
export interface RailOverview {
  railType: string;
  /** Null: no rate limit. */
  maxPerSecond: number | null;
  ordered: boolean;
  /** Null: no circuit breaker. */
  breakerThreshold: number | null;
  breakerCooldownSeconds: number;
  breakerMaxCooldownSeconds: number;
  breakerState: BreakerState;
  consecutiveFailures: number;
  openUntil: Date | null;
  cooldownSeconds: number | null;
  /** Participants waiting behind a FAILED head on this (ordered) rail until it is re-driven. */
  blockedParticipants: number;
  updatedBy: string;
  updatedAt: Date;
}

export const BREAKER_STATES = ['closed', 'half_open', 'open'] as const;
export type BreakerState = (typeof BREAKER_STATES)[number];

/** What to change; undefined leaves a setting as it is. */
export interface RailSettingsChange {
  railType: string;
  /** 0 removes the limit. */
  maxPerSecond?: number;
  ordered?: boolean;
  /** 0 removes the breaker. */
  breakerThreshold?: number;
  breakerCooldownSeconds?: number;
  breakerMaxCooldownSeconds?: number;
  reason: string;
}

export async function setRailSettings(db: Queryable, change: RailSettingsChange): Promise<void> {
  await db.query('SELECT 1 FROM public.set_rail_settings($1, $2, $3, $4, $5, $6, $7)', [
    change.railType,
    change.maxPerSecond ?? null,
    change.ordered ?? null,
    change.breakerThreshold ?? null,
    change.breakerCooldownSeconds ?? null,
    change.breakerMaxCooldownSeconds ?? null,
    change.reason,
  ]);
}

export async function railOverview(db: Queryable): Promise<RailOverview[]> {
  const { rows } = await db.query<{
    rail_type: string;
    max_per_second: number | null;
    ordered: boolean;
    breaker_threshold: number | null;
    breaker_cooldown_seconds: number;
    breaker_max_cooldown_seconds: number;
    breaker_state: BreakerState;
    consecutive_failures: number;
    open_until: Date | null;
    cooldown_seconds: number | null;
    blocked_participants: string;
    updated_by: string;
    updated_at: Date;
  }>(
    `SELECT rail_type, max_per_second, ordered, breaker_threshold, breaker_cooldown_seconds,
            breaker_max_cooldown_seconds, breaker_state, consecutive_failures, open_until,
            cooldown_seconds, blocked_participants, updated_by, updated_at
       FROM public.outbox_rail_overview()`,
  );
  return rows.map((row) => ({
    railType: row.rail_type,
    maxPerSecond: row.max_per_second,
    ordered: row.ordered,
    breakerThreshold: row.breaker_threshold,
    breakerCooldownSeconds: row.breaker_cooldown_seconds,
    breakerMaxCooldownSeconds: row.breaker_max_cooldown_seconds,
    breakerState: row.breaker_state,
    consecutiveFailures: row.consecutive_failures,
    openUntil: row.open_until,
    cooldownSeconds: row.cooldown_seconds,
    blockedParticipants: Number(row.blocked_participants),
    updatedBy: row.updated_by,
    updatedAt: row.updated_at,
  }));
}
