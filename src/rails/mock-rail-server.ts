import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HTTP_DEFAULTS } from './http.ts';

export interface MockRailOptions {
  port?: number;
  host?: string;
  /** Response delay in ms: fixed, or drawn uniformly from [min, max]. */
  latencyMs?: number | [number, number];
  /** Share of new deliveries refused with 422 (FAILED at the relayer). */
  failureRate?: number;
  /** Share of new deliveries answered 503 with Retry-After (RETRYABLE at the relayer). */
  retryableRate?: number;
  retryAfterSeconds?: number;
}

export interface MockRailStats {
  requests: number;
  /** Distinct idempotency keys accepted: what a real rail would have paid out. */
  accepted: number;
  /** Redeliveries of an accepted key, answered with the original reference. */
  duplicates: number;
  retryable: number;
  rejected: number;
  invalid: number;
}

export interface MockRail {
  url: string;
  port: number;
  stats(): MockRailStats;
  close(): Promise<void>;
}

/** Bounds memory in a long demo run; the oldest keys are forgotten first. */
const MAX_REMEMBERED_KEYS = 1_000_000;
const MAX_BODY_BYTES = 1024 * 1024;

/**
 * A stand-in payment rail speaking the http rail's protocol, for the compose stack and the
 * demo: POST → 200 `{ reference }`, 503 with Retry-After, or 422. It de-duplicates by
 * idempotency key like a real rail must: a key it accepted before gets the same reference
 * again, so `accepted` counts each instruction once however often it is redelivered.
 */
export async function startMockRail(options: MockRailOptions = {}): Promise<MockRail> {
  const failureRate = rate('failureRate', options.failureRate ?? 0);
  const retryableRate = rate('retryableRate', options.retryableRate ?? 0);
  if (failureRate + retryableRate > 1) {
    throw new RangeError('mock rail: failureRate + retryableRate must not exceed 1');
  }
  const latency = latencyRange(options.latencyMs ?? 0);
  const retryAfterSeconds = options.retryAfterSeconds ?? 1;
  const references = new Map<string, string>();
  const stats: MockRailStats = {
    requests: 0,
    accepted: 0,
    duplicates: 0,
    retryable: 0,
    rejected: 0,
    invalid: 0,
  };
  const pending = new Set<NodeJS.Timeout>();

  const respondLater = (
    response: http.ServerResponse,
    status: number,
    body: object,
    headers = {},
  ) => {
    const delay = Math.round(latency[0] + (latency[1] - latency[0]) * Math.random());
    const timer = setTimeout(() => {
      pending.delete(timer);
      response.writeHead(status, { 'content-type': 'application/json', ...headers });
      response.end(JSON.stringify(body));
    }, delay);
    pending.add(timer);
  };

  const handleDispatch = (
    request: http.IncomingMessage,
    response: http.ServerResponse,
    raw: string,
  ) => {
    stats.requests += 1;
    const key = request.headers[HTTP_DEFAULTS.idempotencyHeader.toLowerCase()];
    if (typeof key !== 'string' || key.length === 0 || !isDeliveryBody(raw)) {
      stats.invalid += 1;
      respondLater(response, 400, {
        error: `expected a JSON delivery body and an ${HTTP_DEFAULTS.idempotencyHeader} header`,
      });
      return;
    }
    const known = references.get(key);
    if (known !== undefined) {
      stats.duplicates += 1;
      respondLater(response, 200, { reference: known, duplicate: true });
      return;
    }
    const draw = Math.random();
    if (draw < failureRate) {
      stats.rejected += 1;
      respondLater(response, 422, { error: 'the mock rail rejected the instruction' });
    } else if (draw < failureRate + retryableRate) {
      stats.retryable += 1;
      respondLater(
        response,
        503,
        { error: 'the mock rail is busy' },
        { 'retry-after': String(retryAfterSeconds) },
      );
    } else {
      // Recorded before the delay, so a concurrent redelivery of the same key also sees it.
      const reference = `mock-${randomUUID()}`;
      remember(references, key, reference);
      stats.accepted += 1;
      respondLater(response, 200, { reference });
    }
  };

  const server = http.createServer((request, response) => {
    if (request.method === 'GET' && request.url === '/healthz') {
      response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (request.method === 'GET' && request.url === '/stats') {
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(stats));
      return;
    }
    if (request.method !== 'POST') {
      response.writeHead(405, { allow: 'POST, GET' }).end();
      return;
    }
    readBody(request)
      .then((raw) => handleDispatch(request, response, raw))
      .catch(() => {
        stats.invalid += 1;
        if (!response.headersSent) response.writeHead(413).end();
      });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  return {
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${address.port}/dispatch`,
    port: address.port,
    stats: () => ({ ...stats }),
    close: async () => {
      for (const timer of pending) clearTimeout(timer);
      pending.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function rate(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0 || value > 1) {
    throw new RangeError(`mock rail: ${name} must be a number from 0 to 1`);
  }
  return value;
}

function latencyRange(latency: number | [number, number]): [number, number] {
  const [min, max] = typeof latency === 'number' ? [latency, latency] : latency;
  if (!(min >= 0 && max >= min)) {
    throw new RangeError(
      'mock rail: latencyMs must be a number >= 0 or [min, max] with 0 <= min <= max',
    );
  }
  return [min, max];
}

function remember(references: Map<string, string>, key: string, reference: string): void {
  if (references.size >= MAX_REMEMBERED_KEYS) {
    const oldest = references.keys().next();
    if (!oldest.done) references.delete(oldest.value);
  }
  references.set(key, reference);
}

function isDeliveryBody(raw: string): boolean {
  try {
    const body: unknown = JSON.parse(raw);
    return typeof body === 'object' && body !== null && 'outboxId' in body;
  } catch {
    return false;
  }
}

function readBody(request: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('body too large'));
        request.destroy();
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}
