export interface RetryPolicy {
  /** Delay after the first failed attempt. */
  baseMs: number;
  /** No computed delay and no rail hint exceeds this. */
  maxMs: number;
  /** Fraction (0..1) of the delay taken off at random, so failed items do not retry in lockstep. */
  jitter: number;
}

/**
 * How long to wait before the next delivery after attempt `attemptNo` (1-based) failed
 * retryably: `baseMs * 2^(attemptNo - 1)`, capped at `maxMs`, then reduced by up to
 * `jitter` of itself. Jitter only ever shortens the delay, so the cap holds exactly and
 * items that reached the cap still spread out instead of re-forming a herd at `maxMs`.
 *
 * A rail's own hint (`Retry-After`) wins over the computed delay: the rail knows when it
 * will be ready. It is still capped at `maxMs` and never negative.
 */
export function retryDelayMs(
  attemptNo: number,
  policy: RetryPolicy,
  hintMs?: number,
  random: () => number = Math.random,
): number {
  const maxMs = Math.max(0, policy.maxMs);
  if (hintMs !== undefined && Number.isFinite(hintMs)) {
    return Math.round(clamp(hintMs, 0, maxMs));
  }
  const attempt = Number.isFinite(attemptNo) ? Math.max(1, Math.floor(attemptNo)) : 1;
  // 2^1024 is Infinity; capping the exponent keeps the arithmetic finite for any attempt number.
  const exponential = Math.max(0, policy.baseMs) * 2 ** Math.min(attempt - 1, 1000);
  const capped = Math.min(exponential, maxMs);
  const jitter = clamp(policy.jitter, 0, 1);
  const draw = clamp(random(), 0, 1);
  return Math.round(capped * (1 - jitter * draw));
}

function clamp(value: number, min: number, max: number): number {
  if (Number.isNaN(value)) return min;
  return Math.min(max, Math.max(min, value));
}
