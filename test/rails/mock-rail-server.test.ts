import { afterEach, describe, expect, it } from 'vitest';
import { HttpRail } from '../../src/rails/http.ts';
import {
  startMockRail,
  type MockRail,
  type MockRailOptions,
} from '../../src/rails/mock-rail-server.ts';
import { dispatchRequest } from '../support/dispatch-requests.ts';

const started: MockRail[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((rail) => rail.close()));
});

async function mockRail(
  options: MockRailOptions = {},
): Promise<{ mock: MockRail; rail: HttpRail }> {
  const mock = await startMockRail(options);
  started.push(mock);
  const rail = new HttpRail({
    url: mock.url,
    headers: {},
    idempotencyHeader: 'Idempotency-Key',
    referenceField: 'reference',
  });
  return { mock, rail };
}

describe('mock rail server', () => {
  it('accepts a delivery with a reference the http rail reads', async () => {
    const { mock, rail } = await mockRail();
    expect(await rail.dispatch(dispatchRequest())).toEqual({
      state: 'DISPATCHED',
      railReference: expect.stringMatching(/^mock-/),
      railCode: '200',
    });
    expect(mock.stats()).toMatchObject({ requests: 1, accepted: 1, duplicates: 0 });
  });

  it('answers a redelivery of an accepted key with the same reference', async () => {
    const { mock, rail } = await mockRail();
    const request = dispatchRequest();
    const first = await rail.dispatch(request);
    const again = await rail.dispatch({ ...request, attempt: 2 });
    expect(again).toEqual(first);
    expect(mock.stats()).toMatchObject({ requests: 2, accepted: 1, duplicates: 1 });
  });

  it('de-duplicates concurrent deliveries of one key too', async () => {
    const { mock, rail } = await mockRail({ latencyMs: 20 });
    const request = dispatchRequest();
    const outcomes = await Promise.all(Array.from({ length: 5 }, () => rail.dispatch(request)));
    expect(new Set(outcomes.map((o) => o.state === 'DISPATCHED' && o.railReference)).size).toBe(1);
    expect(mock.stats()).toMatchObject({ accepted: 1, duplicates: 4 });
  });

  it('refuses with 422 (FAILED) at failureRate 1', async () => {
    const { mock, rail } = await mockRail({ failureRate: 1 });
    expect(await rail.dispatch(dispatchRequest())).toMatchObject({
      state: 'FAILED',
      errorCode: 'HTTP_422',
    });
    expect(mock.stats()).toMatchObject({ rejected: 1, accepted: 0 });
  });

  it('answers 503 with Retry-After (RETRYABLE with the hint) at retryableRate 1', async () => {
    const { mock, rail } = await mockRail({ retryableRate: 1, retryAfterSeconds: 2 });
    expect(await rail.dispatch(dispatchRequest())).toMatchObject({
      state: 'RETRYABLE',
      errorCode: 'HTTP_503',
      retryAfterMs: 2000,
    });
    expect(mock.stats()).toMatchObject({ retryable: 1, accepted: 0 });
  });

  it('refuses a delivery without an idempotency key with 400', async () => {
    const { mock } = await mockRail();
    const response = await fetch(mock.url, {
      method: 'POST',
      body: JSON.stringify({ outboxId: 'x' }),
    });
    expect(response.status).toBe(400);
    expect(mock.stats()).toMatchObject({ invalid: 1, accepted: 0 });
  });

  it('serves a health check for the compose stack', async () => {
    const { mock } = await mockRail();
    const response = await fetch(new URL('/healthz', mock.url));
    expect(response.status).toBe(200);
  });

  it('refuses impossible rates', async () => {
    await expect(startMockRail({ failureRate: 0.6, retryableRate: 0.6 })).rejects.toThrow(
      RangeError,
    );
    await expect(startMockRail({ failureRate: 2 })).rejects.toThrow(RangeError);
  });
});
