/**
 * Read-plane queries for `symphony-relay status`, run as symphony_readonly (SELECT on the
 * pending and attempts tables). Queue gauges come from outboxQueueStats in outbox.ts.
 */
import type { Queryable } from './pool.ts';

/** Attempt rows written in the window, by state (only states that occurred are present). */
export type AttemptCounts = Record<string, number>;

/**
 * Counts ledger rows written in the last `windowSeconds`. The window is applied to the
 * uuidv7 attempt_id, whose first 48 bits are its creation time in Unix milliseconds: the
 * bound is the smallest uuid of the window's first millisecond, so the primary key index
 * finds the window instead of a scan over the whole (append-only, ever-growing) ledger.
 */
export async function recentAttemptCounts(
  db: Queryable,
  windowSeconds: number,
): Promise<AttemptCounts> {
  if (!Number.isInteger(windowSeconds) || windowSeconds <= 0) {
    throw new RangeError(`windowSeconds must be a positive integer, got ${windowSeconds}`);
  }
  const { rows } = await db.query<{ state: string; attempts: string }>(
    `WITH bound AS (
       SELECT lpad(to_hex(floor(extract(epoch FROM now() - make_interval(secs => $1)) * 1000)::bigint), 12, '0') AS ms
     )
     SELECT a.state::text AS state, count(*) AS attempts
       FROM public.payment_outbox_attempts a, bound
      WHERE a.attempt_id >= (substr(bound.ms, 1, 8) || '-' || substr(bound.ms, 9, 4) || '-0000-0000-000000000000')::uuid
      GROUP BY a.state
      ORDER BY a.state`,
    [windowSeconds],
  );
  return Object.fromEntries(rows.map((row) => [row.state, Number(row.attempts)]));
}
