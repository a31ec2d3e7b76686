import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { dispatchSafely } from '../../src/rails/dispatch.ts';
import { HttpRail, REFERENCE_READ_TIMEOUT_MS, type HttpRailOptions } from '../../src/rails/http.ts';
import { RailRegistry } from '../../src/rails/registry.ts';
import { dispatchInput, dispatchRequest } from '../support/dispatch-requests.ts';
import { closedPortUrl, startRailServer, type RailServer } from '../support/rail-server.ts';

let server: RailServer;
beforeAll(async () => {
  server = await startRailServer();
});
afterAll(async () => {
  await server.close();
});
afterEach(() => {
  server.requests.length = 0;
});

function rail(options: Partial<HttpRailOptions> = {}, now?: () => number): HttpRail {
  return new HttpRail(
    {
      url: server.url,
      headers: {},
      idempotencyHeader: 'Idempotency-Key',
      referenceField: 'reference',
      ...options,
    },
    now,
  );
}

describe('http rail: status → outcome', () => {
  it('200 with a reference in the body is DISPATCHED with that reference', async () => {
    server.respondNext({ status: 200, body: { reference: 'rail-ref-1' } });
    expect(await rail().dispatch(dispatchRequest())).toEqual({
      state: 'DISPATCHED',
      railReference: 'rail-ref-1',
      railCode: '200',
    });
  });

  it('201 is DISPATCHED; the reference is read from the configured field', async () => {
    server.respondNext({ status: 201, body: { id: 'pay_123', reference: 'other' } });
    expect(await rail({ referenceField: 'id' }).dispatch(dispatchRequest())).toEqual({
      state: 'DISPATCHED',
      railReference: 'pay_123',
      railCode: '201',
    });
  });

  it.each([
    ['a body that is not JSON', { status: 200, body: 'accepted' }],
    ['an empty body', { status: 202 }],
    ['a JSON body without the field', { status: 200, body: { status: 'ok' } }],
    [
      'a body over 64 KiB',
      { status: 200, body: { reference: 'too-big', padding: 'x'.repeat(70 * 1024) } },
    ],
  ])('2xx with %s is still DISPATCHED, with a null reference', async (_label, response) => {
    server.respondNext(response);
    const outcome = await rail().dispatch(dispatchRequest());
    expect(outcome).toMatchObject({ state: 'DISPATCHED', railReference: null });
  });

  it('reads the reference from a body of many chunks up to 64 KiB', async () => {
    server.respondNext({
      status: 200,
      body: { padding: 'x'.repeat(60 * 1024), reference: 'after-the-padding' },
    });
    expect(await rail().dispatch(dispatchRequest())).toMatchObject({
      state: 'DISPATCHED',
      railReference: 'after-the-padding',
    });
  });

  it.each([408, 425, 429, 500, 502, 503])('%i is RETRYABLE HTTP_%i', async (status) => {
    server.respondNext({ status, body: { error: 'try later' } });
    expect(await rail().dispatch(dispatchRequest())).toEqual({
      state: 'RETRYABLE',
      errorCode: `HTTP_${status}`,
      errorMessage: expect.stringContaining(`HTTP ${status}`),
      railCode: String(status),
    });
  });

  it.each([400, 401, 404, 409, 422])('%i is FAILED HTTP_%i', async (status) => {
    server.respondNext({ status, body: { error: 'refused' } });
    expect(await rail().dispatch(dispatchRequest())).toEqual({
      state: 'FAILED',
      errorCode: `HTTP_${status}`,
      errorMessage: expect.stringContaining(`HTTP ${status}`),
      railCode: String(status),
    });
  });

  it('does not copy the body of a refusal into the outcome (it may echo the payload)', async () => {
    server.respondNext({ status: 422, body: { error: 'bad iban DE89370400440532013000' } });
    const outcome = await rail().dispatch(dispatchRequest());
    expect(JSON.stringify(outcome)).not.toContain('DE89370400440532013000');
  });

  it('does not follow a redirect (it would replay the POST and its auth headers elsewhere)', async () => {
    server.respondNext({ status: 307, headers: { location: 'http://127.0.0.1:1/elsewhere' } });
    const outcome = await rail().dispatch(dispatchRequest());
    expect(outcome).toMatchObject({ state: 'RETRYABLE', errorCode: 'HTTP_307' });
    expect(server.requests).toHaveLength(1);
  });
});

describe('http rail: Retry-After', () => {
  const now = Date.UTC(2030, 0, 1, 12, 0, 0);

  it('reads delay-seconds', async () => {
    server.respondNext({ status: 503, headers: { 'retry-after': '7' } });
    expect(await rail().dispatch(dispatchRequest())).toMatchObject({
      state: 'RETRYABLE',
      errorCode: 'HTTP_503',
      retryAfterMs: 7000,
    });
  });

  it('reads an HTTP date', async () => {
    const at = new Date(now + 30_000).toUTCString();
    server.respondNext({ status: 429, headers: { 'retry-after': at } });
    expect(await rail({}, () => now).dispatch(dispatchRequest())).toMatchObject({
      state: 'RETRYABLE',
      errorCode: 'HTTP_429',
      retryAfterMs: 30_000,
    });
  });

  it('turns a date in the past into 0', async () => {
    server.respondNext({
      status: 503,
      headers: { 'retry-after': new Date(now - 5000).toUTCString() },
    });
    expect(await rail({}, () => now).dispatch(dispatchRequest())).toMatchObject({
      retryAfterMs: 0,
    });
  });

  it('leaves the hint out when the header is absent or unreadable', async () => {
    server.respondNext({ status: 503 }, { status: 503, headers: { 'retry-after': 'soon' } });
    const absent = await rail().dispatch(dispatchRequest());
    const unreadable = await rail().dispatch(dispatchRequest());
    expect(absent).not.toHaveProperty('retryAfterMs');
    expect(unreadable).not.toHaveProperty('retryAfterMs');
  });
});

describe('http rail: what it sends', () => {
  it('POSTs the item as JSON with the idempotency key and identity headers', async () => {
    const request = dispatchRequest({ attempt: 3, sequenceId: '981' });
    await rail({ headers: { Authorization: 'Bearer static-token' } }).dispatch(request);

    expect(server.requests).toHaveLength(1);
    const received = server.requests[0]!;
    expect(received.method).toBe('POST');
    expect(received.path).toBe('/dispatch');
    expect(received.headers).toMatchObject({
      'idempotency-key': request.idempotencyKey,
      'x-symphony-participant-id': request.participantId,
      'x-symphony-sequence-id': '981',
      authorization: 'Bearer static-token',
      'content-type': 'application/json',
    });
    expect(received.body).toEqual({
      outboxId: request.outboxId,
      instructionId: request.instructionId,
      participantId: request.participantId,
      sequenceId: '981',
      attempt: 3,
      payload: request.payload,
    });
  });

  it('uses the configured idempotency header, which static headers cannot override', async () => {
    const request = dispatchRequest();
    await rail({
      idempotencyHeader: 'X-Request-Key',
      headers: { 'X-Request-Key': 'static-value', 'X-Symphony-Participant-Id': 'spoofed' },
    }).dispatch(request);
    expect(server.requests[0]!.headers['x-request-key']).toBe(request.idempotencyKey);
    expect(server.requests[0]!.headers['x-symphony-participant-id']).toBe(request.participantId);
  });

  it('sends the same idempotency key on every redelivery of an item', async () => {
    const first = dispatchRequest({ attempt: 1 });
    await rail().dispatch(first);
    await rail().dispatch({ ...first, attempt: 2 });
    expect(server.requests.map((r) => r.headers['idempotency-key'])).toEqual([
      first.idempotencyKey,
      first.idempotencyKey,
    ]);
  });
});

describe('http rail: timeouts and network errors', () => {
  /** A request the server holds far beyond any timeout used here; keyed, so it cannot leak into another test. */
  function answeredTooLate(overrides: Parameters<typeof dispatchRequest>[0] = {}) {
    const request = dispatchRequest(overrides);
    server.respondToKey(request.idempotencyKey, {
      status: 200,
      body: { reference: 'too-late' },
      delayMs: 10_000,
    });
    return request;
  }

  it('is RETRYABLE TIMEOUT when the rail answers after its own timeout', async () => {
    expect(await rail({ timeoutMs: 200 }).dispatch(answeredTooLate())).toMatchObject({
      state: 'RETRYABLE',
      errorCode: 'TIMEOUT',
    });
  });

  it("is RETRYABLE TIMEOUT when the caller's signal times out", async () => {
    const request = answeredTooLate({ signal: AbortSignal.timeout(200) });
    expect(await rail().dispatch(request)).toMatchObject({
      state: 'RETRYABLE',
      errorCode: 'TIMEOUT',
    });
  });

  it('is RETRYABLE ABORTED when the caller aborts for another reason (shutdown)', async () => {
    const controller = new AbortController();
    const outcome = rail().dispatch(answeredTooLate({ signal: controller.signal }));
    setTimeout(() => controller.abort(), 200);
    expect(await outcome).toMatchObject({ state: 'RETRYABLE', errorCode: 'ABORTED' });
  });

  it('is RETRYABLE NETWORK_ERROR when nothing listens', async () => {
    const closed = new HttpRail({
      url: await closedPortUrl(),
      headers: {},
      idempotencyHeader: 'Idempotency-Key',
      referenceField: 'reference',
    });
    expect(await closed.dispatch(dispatchRequest())).toEqual({
      state: 'RETRYABLE',
      errorCode: 'NETWORK_ERROR',
      errorMessage: expect.stringContaining('ECONNREFUSED'),
    });
  });
});

describe('http rail: connections to the rail', () => {
  it.each([
    ['64 by default', {}, 70, 64],
    ['maxConnections when set', { maxConnections: 2 }, 6, 2],
  ])(
    'holds at most %s open at once, and every request still gets through',
    async (_label, options, requests, bound) => {
      // A rail of its own: the connection count is per server.
      const slow = await startRailServer();
      try {
        slow.setDefault({ status: 200, body: { reference: 'held' }, delayMs: 200 });
        const bounded = new HttpRail({
          url: slow.url,
          headers: {},
          idempotencyHeader: 'Idempotency-Key',
          referenceField: 'reference',
          ...options,
        });
        const outcomes = await Promise.all(
          Array.from({ length: requests }, () => bounded.dispatch(dispatchRequest())),
        );
        await bounded.close();
        expect(outcomes.every((outcome) => outcome.state === 'DISPATCHED')).toBe(true);
        expect(slow.requests).toHaveLength(requests);
        expect(slow.mostConnectionsAtOnce()).toBe(bound);
      } finally {
        await slow.close();
      }
    },
  );
});

describe('http rail: a 2xx status means DISPATCHED, whatever the body does', () => {
  it('reports DISPATCHED with a null reference when the body stalls after 200 headers', async () => {
    const request = dispatchRequest();
    server.respondToKey(request.idempotencyKey, {
      status: 200,
      body: { reference: 'never-finished-reference' },
      stallBody: true,
    });
    expect(await rail().dispatch(request)).toEqual({
      state: 'DISPATCHED',
      railReference: null,
      railCode: '200',
    });
  });

  it('stays DISPATCHED when the dispatch timeout passes while the body stalls (no retry of an accepted payment)', async () => {
    const input = dispatchInput({ railType: 'bank' });
    server.respondToKey(input.idempotencyKey, {
      status: 201,
      body: { reference: 'never-finished-reference' },
      stallBody: true,
    });
    const outcome = await dispatchSafely(new RailRegistry([['bank', rail()]]), input, {
      timeoutMs: REFERENCE_READ_TIMEOUT_MS / 4,
    });
    expect(outcome).toMatchObject({ state: 'DISPATCHED', railReference: null, railCode: '201' });
  });

  it('a request that cannot be built is FAILED INVALID_REQUEST at once, and nothing is sent', async () => {
    const outcome = await rail().dispatch(dispatchRequest({ participantId: 'bänk-☃' }));
    expect(outcome).toMatchObject({ state: 'FAILED', errorCode: 'INVALID_REQUEST' });
    expect(server.requests).toHaveLength(0);
  });

  it('forwards the W3C trace context', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    await rail().dispatch(dispatchRequest({ traceparent }));
    expect(server.requests[0]?.headers.traceparent).toBe(traceparent);
  });
});
