import { abortedOutcome, abortOutcome, timeoutReason } from './abort.ts';
import type { DispatchOutcome, DispatchRequest, RailAdapter } from './rail.ts';

export type DispatchInput = Omit<DispatchRequest, 'signal'>;
export type TimedDispatchOutcome = DispatchOutcome & { latencyMs: number };

export interface RailLookup {
  get(railType: string): RailAdapter | undefined;
  railTypes(): string[];
}

export interface DispatchOptions {
  /** Hard upper bound; the lease is sized to outlast it (see config). */
  timeoutMs: number;
  /** Aborted by the relayer when the shutdown grace period ends. */
  signal?: AbortSignal;
}

const MAX_ERROR_MESSAGE = 500;
/** The ledger's bounds (0020): error and rail codes, and rail references. */
const MAX_CODE = 64;
const MAX_REFERENCE = 512;

function bounded(text: string, max: number): string {
  return text.length > max ? text.slice(0, max) : text;
}

/**
 * After its signal aborts, an adapter gets this long to say what happened before it is cut
 * short. An adapter that honours its signal answers within microseconds, and its answer can
 * differ from "timed out": the http rail that already has a 2xx status reports DISPATCHED
 * (the rail accepted the payment; only the body with its reference was late). The lease
 * margin covers it many times over.
 */
export const ABORT_GRACE_MS = 250;

/**
 * Delivers one item and always comes back with an outcome, within `timeoutMs`: an unknown
 * rail_type is RETRYABLE (never FAILED by configuration), an adapter that throws, returns garbage, or hangs (even one that
 * ignores its abort signal) is RETRYABLE. Every claimed item therefore reaches completion;
 * a late answer from an adapter after its timeout is discarded, and the redelivery carries
 * the same idempotency key.
 */
export async function dispatchSafely(
  registry: RailLookup,
  request: DispatchInput,
  options: DispatchOptions,
): Promise<TimedDispatchOutcome> {
  const started = performance.now();
  const outcome = await settle(registry, request, options);
  return { ...outcome, latencyMs: Math.max(0, Math.round(performance.now() - started)) };
}

async function settle(
  registry: RailLookup,
  request: DispatchInput,
  options: DispatchOptions,
): Promise<DispatchOutcome> {
  const adapter = registry.get(request.railType);
  if (!adapter) {
    // Claims name the served rail types, so this is a bug, not a configuration: never FAIL a
    // payment for it; retry, and let a worker that serves the rail deliver it.
    const known = registry.railTypes();
    return {
      state: 'RETRYABLE',
      errorCode: 'UNKNOWN_RAIL',
      errorMessage: `no rail adapter is configured for rail_type ${JSON.stringify(request.railType)} (configured: ${known.length ? known.join(', ') : 'none'}); add it to SYMPHONY_RAILS`,
    };
  }

  const shutdown = options.signal;
  if (shutdown?.aborted) return abortedOutcome(shutdown);
  const abort = new LazyAbort();

  // One promise, settled once: by the adapter's answer, or shortly after the deadline passes
  // or the relayer aborts, whether or not the adapter notices its signal (a hung adapter must
  // not hold a claimed item past its lease). Built by hand rather than with Promise.race and
  // a listener per abort source: this runs once per item (issue 9).
  return new Promise<DispatchOutcome>((resolve) => {
    let settled = false;
    let graceTimer: NodeJS.Timeout | undefined;
    const finish = (outcome: DispatchOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      clearTimeout(graceTimer);
      shutdown?.removeEventListener('abort', onShutdown);
      resolve(outcome);
    };
    const cutShort = (reason: unknown): void => {
      if (settled || !abort.abort(reason)) return;
      graceTimer = setTimeout(() => finish(abortOutcome(reason)), ABORT_GRACE_MS);
    };
    const onShutdown = (): void => cutShort(shutdown?.reason);
    const deadline = setTimeout(
      () => cutShort(timeoutReason(`the dispatch exceeded ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );
    shutdown?.addEventListener('abort', onShutdown, { once: true });
    void callAdapter(adapter, dispatchCall(request, abort), abort).then(finish);
  });
}

/**
 * What the adapter is given: the input, and a signal made when first read. A literal with
 * every field (not a spread plus a getter, which V8 keeps as a slow dictionary object) and an
 * own enumerable getter, so `{ ...request }` in an adapter still carries the signal.
 */
function dispatchCall(input: DispatchInput, abort: LazyAbort): DispatchRequest {
  return {
    outboxId: input.outboxId,
    instructionId: input.instructionId,
    participantId: input.participantId,
    sequenceId: input.sequenceId,
    idempotencyKey: input.idempotencyKey,
    railType: input.railType,
    payload: input.payload,
    attempt: input.attempt,
    traceparent: input.traceparent,
    get signal() {
      return abort.signal;
    },
  };
}

/**
 * The item's abort signal, created only when the adapter reads it. An AbortController costs
 * Node 20 more than the rest of the dispatch path together (a sampled profile of a no-op
 * rail: 25 % of the time, and most of the garbage), and an in-process rail that answers at
 * once never looks at its signal.
 */
class LazyAbort {
  private controller: AbortController | undefined;
  private aborted = false;
  private reason: unknown;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  get isAborted(): boolean {
    return this.aborted;
  }

  get abortReason(): unknown {
    return this.reason;
  }

  /** False if it was already aborted. */
  abort(reason: unknown): boolean {
    if (this.aborted) return false;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
    return true;
  }
}

/** Never rejects: a throw (sync or async) or a malformed outcome becomes RETRYABLE. */
async function callAdapter(
  adapter: RailAdapter,
  request: DispatchRequest,
  abort: LazyAbort,
): Promise<DispatchOutcome> {
  try {
    return validOutcome(await adapter.dispatch(request));
  } catch (error) {
    // An adapter that lets its aborted fetch throw means "cut short", not an adapter fault.
    if (abort.isAborted) return abortOutcome(abort.abortReason);
    return {
      state: 'RETRYABLE',
      errorCode: bounded(errorClassName(error), MAX_CODE),
      errorMessage: errorText(error),
    };
  }
}

/** Rebuilds the outcome from known fields only, so nothing odd reaches the database. */
function validOutcome(outcome: unknown): DispatchOutcome {
  const candidate = (outcome ?? {}) as Partial<Record<string, unknown>>;
  const railCode =
    typeof candidate.railCode === 'string'
      ? { railCode: bounded(candidate.railCode, MAX_CODE) }
      : {};
  if (candidate.state === 'DISPATCHED') {
    // A reference is kept only whole: a cut one would name a different payment.
    const reference = candidate.railReference;
    const railReference =
      typeof reference === 'string' && reference.length > 0 && reference.length <= MAX_REFERENCE
        ? reference
        : null;
    return { state: 'DISPATCHED', railReference, ...railCode };
  }
  const errorCode =
    typeof candidate.errorCode === 'string' ? bounded(candidate.errorCode, MAX_CODE) : undefined;
  if (
    (candidate.state === 'RETRYABLE' || candidate.state === 'FAILED') &&
    typeof errorCode === 'string' &&
    errorCode.length > 0
  ) {
    const errorMessage =
      typeof candidate.errorMessage === 'string'
        ? { errorMessage: truncate(candidate.errorMessage) }
        : {};
    if (candidate.state === 'FAILED')
      return { state: 'FAILED', errorCode, ...errorMessage, ...railCode };
    const hint = candidate.retryAfterMs;
    const retryAfterMs =
      typeof hint === 'number' && Number.isFinite(hint) && hint >= 0 ? { retryAfterMs: hint } : {};
    return { state: 'RETRYABLE', errorCode, ...errorMessage, ...retryAfterMs, ...railCode };
  }
  return {
    state: 'RETRYABLE',
    errorCode: 'INVALID_OUTCOME',
    errorMessage: 'the rail adapter returned something that is not a dispatch outcome',
  };
}

function errorClassName(error: unknown): string {
  if (error instanceof Error) {
    const className = error.constructor?.name;
    return className && className !== 'Object' ? className : error.name || 'Error';
  }
  return 'NON_ERROR_THROWN';
}

function errorText(error: unknown): string {
  return truncate(error instanceof Error ? error.message : typeof error === 'string' ? error : '');
}

function truncate(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length > MAX_ERROR_MESSAGE ? `${oneLine.slice(0, MAX_ERROR_MESSAGE)}…` : oneLine;
}
