// The example adapter's own test: a real loopback server plays the operator.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DispatchRequest, RailAdapter } from 'symphony-relay';
import createMobileMoneyRail from './index.ts';

interface Answer {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** Never answer (to prove the adapter honours its abort signal). */
  hang?: boolean;
}

const received: Array<{ headers: http.IncomingHttpHeaders; body: unknown }> = [];
const answers: Answer[] = [];
let server: http.Server;
let baseUrl: string;
let dir: string;
let rail: RailAdapter;

beforeAll(async () => {
  server = http.createServer((request, response) => {
    let raw = '';
    request.on('data', (chunk: Buffer) => (raw += chunk.toString()));
    request.on('end', () => {
      received.push({ headers: request.headers, body: JSON.parse(raw) });
      const answer = answers.shift() ?? { status: 201, body: { transferId: 'tr-1' } };
      if (answer.hang) return;
      response.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
      response.end(JSON.stringify(answer.body ?? {}));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  dir = await mkdtemp(join(tmpdir(), 'momo-rail-'));
  await writeFile(join(dir, 'api-key'), 'momo-secret-key\n');
  rail = await createMobileMoneyRail(
    { baseUrl, apiKeyFile: join(dir, 'api-key') },
    { railType: 'momo', logger: undefined as never },
  );
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

function request(overrides: Partial<DispatchRequest> = {}): DispatchRequest {
  return {
    outboxId: '0197a0b0-0000-7000-8000-000000000001',
    instructionId: 'ins-1',
    participantId: 'bank-a',
    sequenceId: '1',
    idempotencyKey: 'idem-1',
    railType: 'momo',
    payload: { amount: '10.00', currency: 'KES', msisdn: '254700000000' },
    attempt: 1,
    signal: new AbortController().signal,
    ...overrides,
  };
}

describe('example mobile-money rail adapter', () => {
  it('sends the idempotency key, the API key from its file and the trace context', async () => {
    const outcome = await rail.dispatch(
      request({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }),
    );
    expect(outcome).toEqual({ state: 'DISPATCHED', railReference: 'tr-1', railCode: '201' });
    const last = received.at(-1);
    expect(last?.headers['x-reference-id']).toBe('idem-1');
    expect(last?.headers.authorization).toBe('Bearer momo-secret-key');
    expect(last?.headers.traceparent).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-/);
    expect(last?.body).toMatchObject({ externalId: 'ins-1', payer: 'bank-a', amount: '10.00' });
  });

  it('treats 409 (already have this reference id) as the earlier delivery having got through', async () => {
    answers.push({ status: 409, body: { transferId: 'tr-first' } });
    expect(await rail.dispatch(request())).toMatchObject({
      state: 'DISPATCHED',
      railReference: 'tr-first',
    });
  });

  it('maps refusals to FAILED with the operator code, unknown codes to OPERATOR_REFUSED', async () => {
    answers.push({ status: 422, body: { code: 'INSUFFICIENT_FUNDS' } }, { status: 400, body: {} });
    expect(await rail.dispatch(request())).toMatchObject({
      state: 'FAILED',
      errorCode: 'INSUFFICIENT_FUNDS',
    });
    expect(await rail.dispatch(request())).toMatchObject({
      state: 'FAILED',
      errorCode: 'OPERATOR_REFUSED',
    });
  });

  it('maps 429 and 5xx to RETRYABLE, honouring Retry-After', async () => {
    answers.push({ status: 429, headers: { 'retry-after': '7' } }, { status: 503 });
    expect(await rail.dispatch(request())).toMatchObject({
      state: 'RETRYABLE',
      errorCode: 'OPERATOR_BUSY',
      retryAfterMs: 7000,
    });
    expect(await rail.dispatch(request())).toMatchObject({
      state: 'RETRYABLE',
      errorCode: 'OPERATOR_UNAVAILABLE',
    });
  });

  it('stops waiting when the relayer aborts the dispatch', async () => {
    answers.push({ status: 200, hang: true });
    const controller = new AbortController();
    const dispatching = rail.dispatch(request({ signal: controller.signal }));
    controller.abort(new DOMException('dispatch timeout', 'TimeoutError'));
    await expect(dispatching).rejects.toThrow();
  });

  it('declares its error codes, so metrics label them instead of counting them as other', () => {
    expect(rail.errorCodes).toContain('INSUFFICIENT_FUNDS');
  });

  it('refuses bad options at start, naming the option', async () => {
    expect(() =>
      createMobileMoneyRail(
        { baseUrl: 'ftp://x' },
        { railType: 'momo', logger: undefined as never },
      ),
    ).toThrow('options.baseUrl');
  });
});
