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
export function dispatchSafely(
  registry: RailLookup,
  request: DispatchInput,
  options: DispatchOptions,
): Promise<TimedDispatchOutcome> {
  const adapter = registry.get(request.railType);
  if (!adapter) {
    // Claims name the served rail types, so this is a bug, not a configuration: never FAIL a
    // payment for it; retry, and let a worker that serves the rail deliver it.
    const known = registry.railTypes();
    return Promise.resolve({
      state: 'RETRYABLE',
      errorCode: 'UNKNOWN_RAIL',
      errorMessage: `no rail adapter is configured for rail_type ${JSON.stringify(request.railType)} (configured: ${known.length ? known.join(', ') : 'none'}); add it to SYMPHONY_RAILS`,
      latencyMs: 0,
    });
  }
  const shutdown = options.signal;
  if (shutdown?.aborted) return Promise.resolve({ ...abortedOutcome(shutdown), latencyMs: 0 });
  return new Promise((resolve) => {
    new PendingDispatch(adapter, request, options.timeoutMs, shutdown, resolve);
  });
}

/**
 * One item's dispatch until it is settled once: by the adapter's answer, or shortly after
 * the deadline passes or the relayer aborts, whether or not the adapter notices its signal
 * (a hung adapter must not hold a claimed item past its lease). One object per item, with
 * its timers given the object rather than closures over it, and one shutdown listener per
 * signal rather than one per item (Node's addEventListener alone was 4 % of a no-op
 * dispatch): this runs once per item (issue 9).
 */
class PendingDispatch {
  private readonly started = performance.now();
  private settled = false;
  private readonly deadline: NodeJS.Timeout;
  private graceTimer: NodeJS.Timeout | undefined;
  private readonly abort = new LazyAbort();
  /** Links of its shutdown signal's watch list. */
  previousWatched: PendingDispatch | undefined;
  nextWatched: PendingDispatch | undefined;

  constructor(
    adapter: RailAdapter,
    request: DispatchInput,
    timeoutMs: number,
    private readonly shutdown: AbortSignal | undefined,
    private readonly resolve: (outcome: TimedDispatchOutcome) => void,
  ) {
    this.deadline = setTimeout(onDeadline, timeoutMs, this, timeoutMs);
    if (shutdown) watchShutdown(shutdown, this);
    void callAdapter(adapter, dispatchCall(request, this.abort), this.abort).then((outcome) =>
      this.finish(outcome),
    );
  }

  finish(outcome: DispatchOutcome): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.deadline);
    clearTimeout(this.graceTimer);
    if (this.shutdown) unwatchShutdown(this.shutdown, this);
    const latencyMs = Math.max(0, Math.round(performance.now() - this.started));
    this.resolve({ ...outcome, latencyMs });
  }

  /** Aborts the adapter's signal, and settles after the grace period if it has not answered. */
  cutShort(reason: unknown): void {
    if (this.settled || !this.abort.abort(reason)) return;
    this.graceTimer = setTimeout(onGraceOver, ABORT_GRACE_MS, this, reason);
  }
}

function onDeadline(dispatch: PendingDispatch, timeoutMs: number): void {
  dispatch.cutShort(timeoutReason(`the dispatch exceeded ${timeoutMs} ms`));
}

function onGraceOver(dispatch: PendingDispatch, reason: unknown): void {
  dispatch.finish(abortOutcome(reason));
}

/**
 * The dispatches each shutdown signal cuts short when it aborts: a list linked through the
 * dispatches themselves, so watching one allocates nothing (a Set grown to a claim's worth
 * and emptied again reallocated its table every batch).
 */
interface ShutdownWatch {
  head: PendingDispatch | undefined;
}
const watching = new WeakMap<AbortSignal, ShutdownWatch>();

function watchShutdown(signal: AbortSignal, dispatch: PendingDispatch): void {
  let watch = watching.get(signal);
  if (!watch) {
    const created: ShutdownWatch = { head: undefined };
    watch = created;
    watching.set(signal, created);
    signal.addEventListener(
      'abort',
      () => {
        const cut: PendingDispatch[] = [];
        for (let each = created.head; each; each = each.nextWatched) cut.push(each);
        for (const each of cut) each.cutShort(signal.reason);
      },
      { once: true },
    );
  }
  dispatch.nextWatched = watch.head;
  if (watch.head) watch.head.previousWatched = dispatch;
  watch.head = dispatch;
}

function unwatchShutdown(signal: AbortSignal, dispatch: PendingDispatch): void {
  const watch = watching.get(signal);
  if (!watch) return;
  const { previousWatched, nextWatched } = dispatch;
  if (previousWatched) previousWatched.nextWatched = nextWatched;
  else if (watch.head === dispatch) watch.head = nextWatched;
  if (nextWatched) nextWatched.previousWatched = previousWatched;
  dispatch.previousWatched = undefined;
  dispatch.nextWatched = undefined;
}

/**
 * What the adapter is given: the input, and a signal made when first read. A literal with
 * every field, then `signal` as an own enumerable getter, so `{ ...request }` in an adapter
 * still carries the signal. The getter is one function shared by every request, defined
 * with one descriptor: a getter written in the literal is a new closure per item, which
 * keeps each request in a map of its own (1.6 µs and about 1 KB of garbage per item in
 * Node 20, against 0.3–0.5 µs this way; issue 9).
 */
function dispatchCall(input: DispatchInput, abort: LazyAbort): DispatchRequest {
  const call = {
    outboxId: input.outboxId,
    instructionId: input.instructionId,
    participantId: input.participantId,
    sequenceId: input.sequenceId,
    idempotencyKey: input.idempotencyKey,
    railType: input.railType,
    payload: input.payload,
    attempt: input.attempt,
    traceparent: input.traceparent,
    [ABORT]: abort,
  };
  const request = Object.defineProperty(call, 'signal', SIGNAL) as unknown as DispatchRequest;
  abort.madeFor = request;
  return request;
}

const ABORT = Symbol('abort');
const SIGNAL: PropertyDescriptor = {
  get(this: { [ABORT]: LazyAbort }): AbortSignal {
    return this[ABORT].signal;
  },
  enumerable: true,
  configurable: true,
};

/**
 * The item's abort signal, created only when the adapter reads it. An AbortController costs
 * Node 20 more than the rest of the dispatch path together (a sampled profile of a no-op
 * rail: 25 % of the time, and most of the garbage), and an in-process rail that answers at
 * once never looks at its signal. A built-in adapter that only needs to hear of the abort
 * listens through `whenCutShort` instead, which makes no signal at all.
 */
class LazyAbort {
  private controller: AbortController | undefined;
  private aborted = false;
  private reason: unknown;
  private listeners: ((reason: unknown) => void)[] | undefined;
  /** The request it was made for (see `whenCutShort`). */
  madeFor: DispatchRequest | undefined;

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
    for (const listener of this.listeners?.splice(0) ?? []) listener(reason);
    return true;
  }

  listen(listener: (reason: unknown) => void): () => void {
    if (this.aborted) {
      listener(this.reason);
      return doNothing;
    }
    (this.listeners ??= []).push(listener);
    return () => {
      const index = this.listeners?.indexOf(listener) ?? -1;
      if (index >= 0) this.listeners?.splice(index, 1);
    };
  }
}

function doNothing(): void {}

/**
 * Calls `listener` once with the reason when the dispatch of `request` is cut short (at once
 * if it already was); returns what stops listening. For a request made here no AbortSignal
 * is created; for any other (an adapter called directly, a wrapper's copy) the request's
 * signal is used.
 */
export function whenCutShort(
  request: DispatchRequest,
  listener: (reason: unknown) => void,
): () => void {
  // Only the request made here: a copy may carry a signal of its own making.
  const abort = (request as { [ABORT]?: unknown })[ABORT];
  if (abort instanceof LazyAbort && abort.madeFor === request) return abort.listen(listener);
  const { signal } = request;
  if (signal.aborted) {
    listener(signal.reason);
    return doNothing;
  }
  const onAbort = () => listener(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  return () => signal.removeEventListener('abort', onAbort);
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
