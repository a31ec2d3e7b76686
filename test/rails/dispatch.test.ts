import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ABORT_GRACE_MS, dispatchSafely, whenCutShort } from '../../src/rails/dispatch.ts';
import { HttpRail } from '../../src/rails/http.ts';
import type { DispatchOutcome, DispatchRequest, RailAdapter } from '../../src/rails/rail.ts';
import { RailRegistry } from '../../src/rails/registry.ts';
import { dispatchInput } from '../support/dispatch-requests.ts';
import { startRailServer, type RailServer } from '../support/rail-server.ts';

/** An adapter whose dispatch is the given function; records the signals it was handed. */
function adapter(dispatch: (request: DispatchRequest) => Promise<DispatchOutcome>) {
  const signals: AbortSignal[] = [];
  const rail: RailAdapter = {
    kind: 'test',
    dispatch: (request) => {
      signals.push(request.signal);
      return dispatch(request);
    },
  };
  return { rail, signals };
}

function registryWith(rail: RailAdapter): RailRegistry {
  return new RailRegistry([['test-rail', rail]]);
}

class RailExplodedError extends Error {}

const options = { timeoutMs: 1000 };

describe('dispatchSafely', () => {
  it('passes a successful outcome through, with its latency', async () => {
    const { rail } = adapter(async () => ({
      state: 'DISPATCHED',
      railReference: 'ref-1',
      railCode: '200',
    }));
    const outcome = await dispatchSafely(registryWith(rail), dispatchInput(), options);
    expect(outcome).toEqual({
      state: 'DISPATCHED',
      railReference: 'ref-1',
      railCode: '200',
      latencyMs: expect.any(Number),
    });
    expect(outcome.latencyMs).toBeGreaterThanOrEqual(0);
  });

  it('retries (never fails) an item whose rail_type has no adapter, with UNKNOWN_RAIL', async () => {
    const { rail } = adapter(async () => ({ state: 'DISPATCHED', railReference: null }));
    const outcome = await dispatchSafely(
      registryWith(rail),
      dispatchInput({ railType: 'swift' }),
      options,
    );
    expect(outcome).toMatchObject({ state: 'RETRYABLE', errorCode: 'UNKNOWN_RAIL' });
    expect(outcome.state === 'RETRYABLE' && outcome.errorMessage).toContain('"swift"');
    expect(outcome.state === 'RETRYABLE' && outcome.errorMessage).toContain(
      'configured: test-rail',
    );
  });

  it('turns an adapter that throws into RETRYABLE with the error class as the code', async () => {
    const typeError = adapter(async () => {
      throw new TypeError('cannot read properties of undefined');
    });
    const custom = adapter(async () => {
      throw new RailExplodedError('socket hang up');
    });
    expect(
      await dispatchSafely(registryWith(typeError.rail), dispatchInput(), options),
    ).toMatchObject({
      state: 'RETRYABLE',
      errorCode: 'TypeError',
      errorMessage: 'cannot read properties of undefined',
    });
    expect(await dispatchSafely(registryWith(custom.rail), dispatchInput(), options)).toMatchObject(
      {
        state: 'RETRYABLE',
        errorCode: 'RailExplodedError',
        errorMessage: 'socket hang up',
      },
    );
  });

  it('catches a synchronous throw and a thrown non-error too', async () => {
    const sync: RailAdapter = {
      kind: 'test',
      dispatch: () => {
        throw new RangeError('sync');
      },
    };
    const { rail: stringThrower } = adapter(() => Promise.reject('plain string'));
    expect(await dispatchSafely(registryWith(sync), dispatchInput(), options)).toMatchObject({
      state: 'RETRYABLE',
      errorCode: 'RangeError',
    });
    expect(
      await dispatchSafely(registryWith(stringThrower), dispatchInput(), options),
    ).toMatchObject({
      state: 'RETRYABLE',
      errorCode: 'NON_ERROR_THROWN',
      errorMessage: 'plain string',
    });
  });

  it('truncates a long error message to one line', async () => {
    const { rail } = adapter(async () => {
      throw new Error(`line one\nline two ${'x'.repeat(10_000)}`);
    });
    const outcome = await dispatchSafely(registryWith(rail), dispatchInput(), options);
    expect(outcome.state === 'RETRYABLE' && outcome.errorMessage?.length).toBeLessThanOrEqual(501);
    expect(outcome.state === 'RETRYABLE' && outcome.errorMessage).not.toContain('\n');
  });

  it('times out an adapter that hangs and ignores its signal, and aborts that signal', async () => {
    const { rail, signals } = adapter(() => new Promise<never>(() => {}));
    const outcome = await dispatchSafely(registryWith(rail), dispatchInput(), { timeoutMs: 50 });
    expect(outcome).toMatchObject({ state: 'RETRYABLE', errorCode: 'TIMEOUT' });
    expect(signals[0]?.aborted).toBe(true);
  });

  it('discards an answer that arrives after the timeout and its grace, without an unhandled rejection', async () => {
    const lateMs = 20 + ABORT_GRACE_MS + 200;
    const { rail } = adapter(
      () =>
        new Promise<never>((_resolve, reject) =>
          setTimeout(() => reject(new Error('late')), lateMs),
        ),
    );
    const outcome = await dispatchSafely(registryWith(rail), dispatchInput(), { timeoutMs: 20 });
    expect(outcome).toMatchObject({ state: 'RETRYABLE', errorCode: 'TIMEOUT' });
    await new Promise((resolve) => setTimeout(resolve, lateMs));
  });

  it('records an adapter that rethrows its abort as TIMEOUT, not as an adapter error', async () => {
    const { rail } = adapter(
      (request) =>
        new Promise((_resolve, reject) =>
          request.signal.addEventListener('abort', () => reject(request.signal.reason)),
        ),
    );
    const outcome = await dispatchSafely(registryWith(rail), dispatchInput(), { timeoutMs: 20 });
    expect(outcome).toMatchObject({ state: 'RETRYABLE', errorCode: 'TIMEOUT' });
  });

  it('hears an adapter that answers as its signal aborts (it may already hold an acceptance)', async () => {
    const { rail } = adapter(
      (request) =>
        new Promise((resolve) =>
          request.signal.addEventListener('abort', () =>
            resolve({ state: 'DISPATCHED', railReference: null, railCode: '200' }),
          ),
        ),
    );
    const outcome = await dispatchSafely(registryWith(rail), dispatchInput(), { timeoutMs: 20 });
    expect(outcome).toMatchObject({ state: 'DISPATCHED', railReference: null, railCode: '200' });
  });

  it('aborts in-flight dispatches when the relayer aborts (shutdown) and reports ABORTED', async () => {
    const { rail, signals } = adapter(() => new Promise<never>(() => {}));
    const shutdown = new AbortController();
    const pending = dispatchSafely(registryWith(rail), dispatchInput(), {
      timeoutMs: 60_000,
      signal: shutdown.signal,
    });
    shutdown.abort();
    expect(await pending).toMatchObject({ state: 'RETRYABLE', errorCode: 'ABORTED' });
    expect(signals[0]?.aborted).toBe(true);
  });

  it('hands a signal that a copy of the request carries too, and that aborts on the timeout', async () => {
    let copied: AbortSignal | undefined;
    const { rail } = adapter((request) => {
      // A wrapper rail that passes a modified copy on: the signal must come along.
      const copy = { ...request, payload: { ...request.payload, wrapped: true } };
      copied = copy.signal;
      return new Promise((_resolve, reject) =>
        copy.signal.addEventListener('abort', () => reject(copy.signal.reason)),
      );
    });
    const outcome = await dispatchSafely(registryWith(rail), dispatchInput(), { timeoutMs: 20 });
    expect(outcome).toMatchObject({ state: 'RETRYABLE', errorCode: 'TIMEOUT' });
    expect(copied).toBeInstanceOf(AbortSignal);
    expect(copied?.aborted).toBe(true);
  });

  it('hands an already-aborted signal to an adapter that first reads it after the timeout', async () => {
    let lateRead: AbortSignal | undefined;
    const readsLate: RailAdapter = {
      kind: 'test',
      dispatch: (request) =>
        new Promise<never>(() => {
          setTimeout(() => (lateRead = request.signal), 60);
        }),
    };
    const outcome = await dispatchSafely(registryWith(readsLate), dispatchInput(), {
      timeoutMs: 20,
    });
    expect(outcome).toMatchObject({ state: 'RETRYABLE', errorCode: 'TIMEOUT' });
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(lateRead?.aborted).toBe(true);
    expect(lateRead?.reason).toMatchObject({ name: 'TimeoutError' });
  });

  it('cuts short an adapter that hangs without ever reading its signal', async () => {
    const hangs: RailAdapter = { kind: 'test', dispatch: () => new Promise<never>(() => {}) };
    const outcome = await dispatchSafely(registryWith(hangs), dispatchInput(), { timeoutMs: 20 });
    expect(outcome).toMatchObject({ state: 'RETRYABLE', errorCode: 'TIMEOUT' });
  });

  it('does not call the adapter once the relayer has aborted', async () => {
    const { rail, signals } = adapter(async () => ({ state: 'DISPATCHED', railReference: null }));
    const outcome = await dispatchSafely(registryWith(rail), dispatchInput(), {
      timeoutMs: 1000,
      signal: AbortSignal.abort(),
    });
    expect(outcome).toMatchObject({ state: 'RETRYABLE', errorCode: 'ABORTED' });
    expect(signals).toHaveLength(0);
  });

  it.each([
    ['undefined', undefined],
    ['an unknown state', { state: 'OK' }],
    ['a RETRYABLE without error code', { state: 'RETRYABLE' }],
  ])('turns %s from an adapter into RETRYABLE INVALID_OUTCOME', async (_label, returned) => {
    const { rail } = adapter(async () => returned as unknown as DispatchOutcome);
    expect(await dispatchSafely(registryWith(rail), dispatchInput(), options)).toMatchObject({
      state: 'RETRYABLE',
      errorCode: 'INVALID_OUTCOME',
    });
  });

  it('drops a retry hint that is not a non-negative number', async () => {
    const { rail } = adapter(async () => ({
      state: 'RETRYABLE',
      errorCode: 'BUSY',
      retryAfterMs: -5,
    }));
    const outcome = await dispatchSafely(registryWith(rail), dispatchInput(), options);
    expect(outcome).toMatchObject({ state: 'RETRYABLE', errorCode: 'BUSY' });
    expect(outcome).not.toHaveProperty('retryAfterMs');
  });
});

describe('whenCutShort', () => {
  /** A rail that only listens for the cut, through `whenCutShort`, and never answers. */
  function listening(listen: (request: DispatchRequest) => DispatchRequest) {
    const heard: unknown[] = [];
    const rail: RailAdapter = {
      kind: 'test',
      dispatch: (request) => {
        whenCutShort(listen(request), (reason) => heard.push(reason));
        return new Promise<never>(() => {});
      },
    };
    return { rail, heard };
  }

  it('tells a rail of the dispatch timeout once, with its reason', async () => {
    const { rail, heard } = listening((request) => request);
    const outcome = await dispatchSafely(registryWith(rail), dispatchInput(), { timeoutMs: 20 });
    expect(outcome).toMatchObject({ state: 'RETRYABLE', errorCode: 'TIMEOUT' });
    expect(heard).toHaveLength(1);
    expect(heard[0]).toMatchObject({ name: 'TimeoutError' });
  });

  it("listens to the signal a copy of the request carries, when it is the copy's own", async () => {
    const own = new AbortController();
    const { rail, heard } = listening((request) => ({ ...request, signal: own.signal }));
    const outcome = await dispatchSafely(registryWith(rail), dispatchInput(), { timeoutMs: 20 });
    expect(outcome).toMatchObject({ state: 'RETRYABLE', errorCode: 'TIMEOUT' });
    expect(heard).toEqual([]);
    own.abort(new Error('the wrapper gave up'));
    expect(heard).toEqual([new Error('the wrapper gave up')]);
  });

  it('calls at once for a request already cut short, and stops listening when told to', () => {
    const aborted = { signal: AbortSignal.abort(new Error('gone')) } as DispatchRequest;
    const heard: unknown[] = [];
    whenCutShort(aborted, (reason) => heard.push(reason));
    expect(heard).toEqual([new Error('gone')]);

    const controller = new AbortController();
    const stop = whenCutShort({ signal: controller.signal } as DispatchRequest, (reason) =>
      heard.push(reason),
    );
    stop();
    controller.abort();
    expect(heard).toHaveLength(1);
  });
});

describe('dispatchSafely with the http rail', () => {
  let server: RailServer;
  beforeAll(async () => {
    server = await startRailServer();
  });
  afterAll(async () => {
    await server.close();
  });

  const httpRegistry = () =>
    new RailRegistry([
      [
        'card',
        new HttpRail({
          url: server.url,
          headers: {},
          idempotencyHeader: 'Idempotency-Key',
          referenceField: 'reference',
        }),
      ],
    ]);

  it('returns TIMEOUT when the rail server answers after the dispatch timeout', async () => {
    const input = dispatchInput({ railType: 'card' });
    server.respondToKey(input.idempotencyKey, {
      status: 200,
      body: { reference: 'too-late' },
      delayMs: 10_000,
    });
    const outcome = await dispatchSafely(httpRegistry(), input, { timeoutMs: 200 });
    expect(outcome).toMatchObject({ state: 'RETRYABLE', errorCode: 'TIMEOUT' });
  });

  it('delivers the idempotency key end to end', async () => {
    const input = dispatchInput({ railType: 'card' });
    server.respondToKey(input.idempotencyKey, { status: 200, body: { reference: 'keyed-ref' } });
    const outcome = await dispatchSafely(httpRegistry(), input, options);
    expect(outcome).toMatchObject({ state: 'DISPATCHED', railReference: 'keyed-ref' });
    expect(server.requests.at(-1)?.headers['idempotency-key']).toBe(input.idempotencyKey);
  });
});
