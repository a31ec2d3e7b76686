import { describe, expect, it } from 'vitest';
import type { DispatchOutcome } from '../../src/rails/rail.ts';
import { buildRailRegistry } from '../../src/rails/registry.ts';
import { SandboxRail } from '../../src/rails/sandbox.ts';
import { dispatchRequest } from '../support/dispatch-requests.ts';

const instant: [number, number] = [0, 0];
const SANDBOX_REFERENCE = /^sbx-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('sandbox rail', () => {
  it('dispatches with an sbx-<uuid> reference', async () => {
    const rail = new SandboxRail({
      latencyMs: instant,
      outcomes: { DISPATCHED: 1, RETRYABLE: 0, FAILED: 0 },
    });
    const outcome = await rail.dispatch(dispatchRequest());
    expect(outcome).toMatchObject({
      state: 'DISPATCHED',
      railReference: expect.stringMatching(SANDBOX_REFERENCE),
    });
  });

  it('answers a redelivery with the reference of the first delivery, like a de-duplicating rail', async () => {
    const rail = new SandboxRail({
      latencyMs: instant,
      outcomes: { DISPATCHED: 1, RETRYABLE: 0, FAILED: 0 },
    });
    const first = dispatchRequest();
    const again = await rail.dispatch({ ...first, attempt: 2 });
    const other = await rail.dispatch(dispatchRequest());
    expect(again).toEqual(await rail.dispatch(first));
    expect(other).not.toEqual(again);
  });

  it('simulates transient failures and rejections', async () => {
    const retryable = new SandboxRail({
      latencyMs: instant,
      outcomes: { DISPATCHED: 0, RETRYABLE: 1, FAILED: 0 },
    });
    const failing = new SandboxRail({
      latencyMs: instant,
      outcomes: { DISPATCHED: 0, RETRYABLE: 0, FAILED: 1 },
    });
    expect(await retryable.dispatch(dispatchRequest())).toMatchObject({
      state: 'RETRYABLE',
      errorCode: 'SANDBOX_RETRYABLE',
    });
    expect(await failing.dispatch(dispatchRequest())).toMatchObject({
      state: 'FAILED',
      errorCode: 'SANDBOX_REJECTED',
    });
  });

  it('is deterministic with a seed, whatever order the dispatches run in', async () => {
    const requests = Array.from({ length: 200 }, () => dispatchRequest());
    const options = {
      latencyMs: instant,
      outcomes: { DISPATCHED: 1, RETRYABLE: 1, FAILED: 1 },
      seed: 42,
    };
    const forward = await Promise.all(requests.map((r) => new SandboxRail(options).dispatch(r)));
    const backward = await Promise.all(
      [...requests].reverse().map((r) => new SandboxRail(options).dispatch(r)),
    );
    expect(backward.reverse()).toEqual(forward);
    expect(new Set(forward.map((outcome) => outcome.state))).toEqual(
      new Set(['DISPATCHED', 'RETRYABLE', 'FAILED']),
    );
  });

  it('follows the outcome weights (default 0.9 / 0.08 / 0.02)', async () => {
    const rail = new SandboxRail({ latencyMs: instant, seed: 7 });
    const outcomes: DispatchOutcome[] = [];
    for (let i = 0; i < 2000; i++) outcomes.push(await rail.dispatch(dispatchRequest()));
    const count = (state: string) => outcomes.filter((outcome) => outcome.state === state).length;
    expect(count('DISPATCHED')).toBeGreaterThan(1700);
    expect(count('DISPATCHED')).toBeLessThan(1900);
    expect(count('RETRYABLE')).toBeGreaterThan(100);
    expect(count('FAILED')).toBeGreaterThan(10);
  });

  it('stops simulating as soon as its signal aborts', async () => {
    const slow = new SandboxRail({ latencyMs: [600_000, 600_000] });
    expect(await slow.dispatch(dispatchRequest({ signal: AbortSignal.timeout(20) }))).toMatchObject(
      {
        state: 'RETRYABLE',
        errorCode: 'TIMEOUT',
      },
    );
    const controller = new AbortController();
    controller.abort();
    expect(await slow.dispatch(dispatchRequest({ signal: controller.signal }))).toMatchObject({
      state: 'RETRYABLE',
      errorCode: 'ABORTED',
    });
  });

  it('is what the default rails configuration registers', () => {
    const registry = buildRailRegistry({ sandbox: { type: 'sandbox' } });
    expect(registry.get('sandbox')?.kind).toBe('sandbox');
  });
});
