import { hash } from 'node:crypto';
import { abortedOutcome } from './abort.ts';
import type { RailOptionsReader } from './options.ts';
import type { DispatchOutcome, DispatchRequest, RailAdapter } from './rail.ts';

/** Relative weights; they need not sum to 1. */
export interface OutcomeWeights {
  DISPATCHED: number;
  RETRYABLE: number;
  FAILED: number;
}

export interface SandboxRailOptions {
  /** Simulated latency drawn uniformly from [min, max] milliseconds. */
  latencyMs: [number, number];
  outcomes: OutcomeWeights;
  /**
   * Makes latency and outcome a function of (seed, idempotency key, attempt), so a test or a
   * demo run is reproducible whatever order concurrent dispatches happen in.
   */
  seed?: number;
}

export const SANDBOX_DEFAULTS: SandboxRailOptions = {
  latencyMs: [5, 50],
  outcomes: { DISPATCHED: 0.9, RETRYABLE: 0.08, FAILED: 0.02 },
};

const MAX_LATENCY_MS = 600_000;
const OUTCOME_STATES = ['DISPATCHED', 'RETRYABLE', 'FAILED'] as const;

export function parseSandboxOptions(reader: RailOptionsReader): SandboxRailOptions {
  reader.allowOnly(['type', 'latencyMs', 'outcomes', 'seed']);
  const options: SandboxRailOptions = {
    latencyMs: reader.has('latencyMs') ? parseLatency(reader) : SANDBOX_DEFAULTS.latencyMs,
    outcomes: reader.has('outcomes') ? parseWeights(reader) : SANDBOX_DEFAULTS.outcomes,
  };
  if (reader.has('seed')) options.seed = reader.integer('seed', 0, Number.MAX_SAFE_INTEGER);
  return options;
}

function parseLatency(reader: RailOptionsReader): [number, number] {
  const value = reader.value('latencyMs');
  const expected = `[min, max] with integers 0 <= min <= max <= ${MAX_LATENCY_MS}`;
  if (!Array.isArray(value) || value.length !== 2) reader.fail('latencyMs', expected);
  const [min, max] = value as unknown[];
  const valid = (n: unknown): n is number =>
    typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= MAX_LATENCY_MS;
  if (!valid(min) || !valid(max) || min > max) reader.fail('latencyMs', expected);
  return [min, max];
}

function parseWeights(reader: RailOptionsReader): OutcomeWeights {
  const value = reader.object('outcomes');
  const expected = 'an object of non-negative weights for DISPATCHED, RETRYABLE, FAILED (sum > 0)';
  const weights: OutcomeWeights = { DISPATCHED: 0, RETRYABLE: 0, FAILED: 0 };
  for (const [state, weight] of Object.entries(value)) {
    if (!(OUTCOME_STATES as readonly string[]).includes(state)) reader.fail('outcomes', expected);
    if (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0) {
      reader.fail('outcomes', expected);
    }
    weights[state as keyof OutcomeWeights] = weight;
  }
  if (weights.DISPATCHED + weights.RETRYABLE + weights.FAILED <= 0) {
    reader.fail('outcomes', expected);
  }
  return weights;
}

/** A simulated rail for local runs, demos and tests: latency, outcomes, no network. */
export class SandboxRail implements RailAdapter {
  readonly kind = 'sandbox';
  private readonly options: SandboxRailOptions;

  constructor(options: Partial<SandboxRailOptions> = {}) {
    this.options = { ...SANDBOX_DEFAULTS, ...options };
  }

  async dispatch(request: DispatchRequest): Promise<DispatchOutcome> {
    const [latencyDraw, outcomeDraw] = this.draws(request);
    const [min, max] = this.options.latencyMs;
    const latency = Math.round(min + (max - min) * latencyDraw);
    // The signal is read only when there is something to wait for: it is made on first read.
    if (latency > 0 && !(await sleep(latency, request.signal)))
      return abortedOutcome(request.signal);

    switch (pickState(this.options.outcomes, outcomeDraw)) {
      case 'DISPATCHED':
        // Derived from the idempotency key: a redelivery gets the reference of the first
        // delivery, as a de-duplicating rail would answer.
        return { state: 'DISPATCHED', railReference: `sbx-${uuidFrom(request.idempotencyKey)}` };
      case 'RETRYABLE':
        return {
          state: 'RETRYABLE',
          errorCode: 'SANDBOX_RETRYABLE',
          errorMessage: 'the sandbox rail simulated a transient failure',
        };
      case 'FAILED':
        return {
          state: 'FAILED',
          errorCode: 'SANDBOX_REJECTED',
          errorMessage: 'the sandbox rail simulated a rejection',
        };
    }
  }

  private draws(request: DispatchRequest): [number, number] {
    if (this.options.seed === undefined) return [Math.random(), Math.random()];
    const digest = hash(
      'sha256',
      `${this.options.seed}\0${request.idempotencyKey}\0${request.attempt}`,
      'buffer',
    );
    return [digest.readUInt32BE(0) / 2 ** 32, digest.readUInt32BE(4) / 2 ** 32];
  }
}

function pickState(weights: OutcomeWeights, draw: number): keyof OutcomeWeights {
  const total = weights.DISPATCHED + weights.RETRYABLE + weights.FAILED;
  let threshold = draw * total;
  for (const state of OUTCOME_STATES) {
    if (threshold < weights[state]) return state;
    threshold -= weights[state];
  }
  // Rounding can leave the draw just past the last bucket; it belongs to the last non-empty one.
  return [...OUTCOME_STATES].reverse().find((state) => weights[state] > 0) ?? 'DISPATCHED';
}

/** One-shot hash: a hash object per dispatched item cost 1-2 us of the sandbox's time. */
function uuidFrom(text: string): string {
  const hex = hash('sha256', text, 'hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** Resolves true after `ms`, or false as soon as the signal aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
