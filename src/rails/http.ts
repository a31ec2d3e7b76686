import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import { abortOutcome, timeoutReason } from './abort.ts';
import { whenCutShort } from './dispatch.ts';
import {
  parseSigningOptions,
  parseTlsOptions,
  signRequest,
  TLS_FIELDS,
  type HttpSigningOptions,
  type HttpTlsOptions,
} from './http-security.ts';
import type { RailOptionsReader } from './options.ts';
import type { DispatchOutcome, DispatchRequest, RailAdapter } from './rail.ts';

export interface HttpRailOptions {
  /** Endpoint that receives one POST per delivery. */
  url: string;
  /** Static headers (e.g. authorization). Secrets: never logged, never echoed in errors. */
  headers: Record<string, string>;
  idempotencyHeader: string;
  /** Field of the JSON response body that holds the rail's reference. */
  referenceField: string;
  /** Per-rail timeout; only ever shorter than the relayer's dispatch timeout (config checks). */
  timeoutMs?: number;
  /**
   * Most connections this worker holds open to the rail at once (HTTP_DEFAULTS when absent);
   * more requests wait for one, within the dispatch timeout.
   */
  maxConnections?: number;
  /** Mutual TLS, private CA, server name (read from files at start). */
  tls?: HttpTlsOptions;
  /** HMAC-SHA256 request signing (key read from a file at start). */
  signing?: HttpSigningOptions;
}

export const HTTP_DEFAULTS = {
  idempotencyHeader: 'Idempotency-Key',
  referenceField: 'reference',
  /**
   * With a backlog a worker starts up to SYMPHONY_CONCURRENCY (512) dispatches at once. One
   * connection each made four chaos workers open 2,048 sockets to one rail at start: the
   * burst took 2.7 s to reach the rail on an idle machine (64 per worker: 0.7 s), and on a
   * loaded one requests reached the rail after the 8 s dispatch timeout had given up on them,
   * so the rail was paid twice (issue 9). A bank's API wants a bounded number of connections.
   */
  maxConnections: 64,
} as const;
const MAX_CONNECTIONS = 1024;

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** What an HTTP/1.1 header value may hold (tab, visible ASCII, Latin-1): undici's own rule. */
const NOT_A_HEADER_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const MAX_TIMEOUT_MS = 600_000;
/** Enough for any reference-bearing acknowledgement; a larger body is not read further. */
const MAX_RESPONSE_BYTES = 64 * 1024;
/**
 * Once a 2xx status has arrived the rail has accepted the payment; the body only carries its
 * reference. A body that stalls must not turn an accepted payment into a retry (or hold a
 * dispatch slot), so reading it has its own short bound, after which the reference is null.
 */
export const REFERENCE_READ_TIMEOUT_MS = 2_000;

export function parseHttpOptions(reader: RailOptionsReader): HttpRailOptions {
  reader.allowOnly([
    'type',
    'url',
    'headers',
    'idempotencyHeader',
    'referenceField',
    'timeoutMs',
    'maxConnections',
    ...TLS_FIELDS,
    'signing',
  ]);
  const options: HttpRailOptions = {
    url: parseUrl(reader),
    headers: reader.has('headers') ? parseHeaders(reader) : {},
    idempotencyHeader: reader.string('idempotencyHeader', HTTP_DEFAULTS.idempotencyHeader),
    referenceField: reader.string('referenceField', HTTP_DEFAULTS.referenceField),
  };
  if (!HEADER_NAME.test(options.idempotencyHeader)) {
    reader.fail('idempotencyHeader', 'an HTTP header name');
  }
  if (reader.has('timeoutMs')) options.timeoutMs = reader.integer('timeoutMs', 1, MAX_TIMEOUT_MS);
  if (reader.has('maxConnections')) {
    options.maxConnections = reader.integer('maxConnections', 1, MAX_CONNECTIONS);
  }
  const tls = parseTlsOptions(reader, options.url);
  if (tls) options.tls = tls;
  const signing = parseSigningOptions(reader, HEADER_NAME);
  if (signing) options.signing = signing;
  return options;
}

function parseUrl(reader: RailOptionsReader): string {
  const expected =
    'an http:// or https:// URL without user:password (send credentials in "headers")';
  const text = reader.string('url');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return reader.fail('url', expected);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') reader.fail('url', expected);
  if (url.username !== '' || url.password !== '') reader.fail('url', expected);
  return url.toString();
}

function parseHeaders(reader: RailOptionsReader): Record<string, string> {
  const headers = reader.object('headers');
  const expected =
    'an object of header name to string value (tab, visible ASCII or Latin-1; no line breaks)';
  for (const [name, value] of Object.entries(headers)) {
    if (!HEADER_NAME.test(name) || typeof value !== 'string' || NOT_A_HEADER_VALUE.test(value)) {
      reader.fail('headers', expected);
    }
  }
  return headers as Record<string, string>;
}

/**
 * Generic JSON-over-HTTP rail. Status mapping: 2xx DISPATCHED; 408, 425, 429 and 5xx
 * RETRYABLE (honouring Retry-After); any other 4xx FAILED (the rail refused the instruction
 * itself, retrying cannot help); anything else (1xx, 3xx) RETRYABLE, because the rail has not
 * decided and an operator can fix the endpoint before the retry ceiling is reached.
 */
export class HttpRail implements RailAdapter {
  readonly kind = 'http';
  /** One connection pool per rail, holding its TLS identity; closed with the rail. */
  private readonly agent: Agent;
  private readonly origin: string;
  private readonly path: string;
  /**
   * The static headers with lower-cased names: header names are case-insensitive, and the
   * per-item ones set after them must replace, never duplicate, a configured one.
   */
  private readonly staticHeaders: Record<string, string>;
  private readonly idempotencyHeader: string;

  constructor(
    private readonly options: HttpRailOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.agent = new Agent({
      connections: options.maxConnections ?? HTTP_DEFAULTS.maxConnections,
      connect: { ...options.tls, rejectUnauthorized: true },
    });
    const url = new URL(options.url);
    this.origin = url.origin;
    this.path = `${url.pathname}${url.search}`;
    this.staticHeaders = Object.fromEntries(
      Object.entries(options.headers).map(([name, value]) => [name.toLowerCase(), value]),
    );
    this.idempotencyHeader = options.idempotencyHeader.toLowerCase();
  }

  /**
   * undici's request API, not fetch: fetch wraps every response in WHATWG streams, and the
   * dispatch path allocated about 90 KB per delivered item with it against 36 KB without
   * (heap sampling at 1,000 items/s); the garbage collections that cost showed up as the
   * relayer's tail latency (issue 9). No redirect is ever followed.
   */
  async dispatch(request: DispatchRequest): Promise<DispatchOutcome> {
    let built: { headers: Record<string, string>; body: string };
    try {
      built = this.build(request);
    } catch (error) {
      // Nothing was sent and the same item would fail the same way on every retry.
      return {
        state: 'FAILED',
        errorCode: 'INVALID_REQUEST',
        errorMessage: `the request could not be built: ${(error as Error).message}`.slice(
          0,
          MAX_ERROR_TEXT,
        ),
      };
    }
    // One signal for the request and its body: the caller's (dispatch timeout, shutdown), the
    // rail's own timeout, and once a 2xx status is in, the bound on reading the reference.
    const cut = new RequestCut();
    const stopForwarding = whenCutShort(request, (reason) => cut.abort(reason));
    if (cut.aborted) return abortOutcome(cut.reason);
    const { timeoutMs } = this.options;
    const railTimer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(
            () => cut.abort(timeoutReason(`the rail's timeout of ${timeoutMs} ms passed`)),
            timeoutMs,
          );
    try {
      let response: Dispatcher.ResponseData;
      try {
        response = await this.agent.request({
          origin: this.origin,
          path: this.path,
          method: 'POST',
          headers: built.headers,
          body: built.body,
          signal: cut,
        });
      } catch (error) {
        if (cut.aborted) return abortOutcome(cut.reason);
        return {
          state: 'RETRYABLE',
          errorCode: 'NETWORK_ERROR',
          errorMessage: networkErrorText(error),
        };
      }
      return await this.outcomeOf(response, cut);
    } finally {
      clearTimeout(railTimer);
      stopForwarding();
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** Throws when the item cannot travel as HTTP (e.g. a header value outside Latin-1). */
  private build(request: DispatchRequest): { headers: Record<string, string>; body: string } {
    const body = JSON.stringify({
      outboxId: request.outboxId,
      instructionId: request.instructionId,
      participantId: request.participantId,
      sequenceId: request.sequenceId,
      attempt: request.attempt,
      payload: request.payload,
    });
    // Set after the static headers so configuration can never override per-item identity.
    const headers: Record<string, string> = {
      ...this.staticHeaders,
      'content-type': 'application/json',
      accept: 'application/json',
      [this.idempotencyHeader]: headerValue('the idempotency key', request.idempotencyKey),
      'x-symphony-participant-id': headerValue('the participant id', request.participantId),
      'x-symphony-sequence-id': request.sequenceId,
    };
    if (request.traceparent)
      headers.traceparent = headerValue('the trace context', request.traceparent);
    const signing = this.options.signing;
    if (signing) {
      const timestamp = String(Math.floor(this.now() / 1000));
      headers[signing.timestampHeader.toLowerCase()] = timestamp;
      headers[signing.signatureHeader.toLowerCase()] = signRequest(signing.key, timestamp, body);
    }
    return { headers, body };
  }

  private async outcomeOf(
    response: Dispatcher.ResponseData,
    cut: RequestCut,
  ): Promise<DispatchOutcome> {
    const status = response.statusCode;
    const railCode = String(status);
    if (status >= 200 && status < 300) {
      // DISPATCHED from here on, whatever the body does: the rail has accepted the payment.
      const timer = setTimeout(
        () => cut.abort(timeoutReason('the reference was not read in time')),
        REFERENCE_READ_TIMEOUT_MS,
      );
      try {
        const railReference = await readReference(response.body, this.options.referenceField);
        return { state: 'DISPATCHED', railReference, railCode };
      } finally {
        clearTimeout(timer);
      }
    }
    await discardBody(response.body);
    const errorCode = `HTTP_${status}`;
    const errorMessage = `the rail answered HTTP ${status}${response.statusText ? ` ${response.statusText}` : ''}`;
    if (isPermanentRefusal(status)) return { state: 'FAILED', errorCode, errorMessage, railCode };
    const outcome: DispatchOutcome = { state: 'RETRYABLE', errorCode, errorMessage, railCode };
    const retryAfter = response.headers['retry-after'];
    const retryAfterMs = parseRetryAfter(
      (Array.isArray(retryAfter) ? retryAfter[0] : retryAfter) ?? null,
      this.now(),
    );
    if (retryAfterMs !== undefined) outcome.retryAfterMs = retryAfterMs;
    return outcome;
  }
}

function headerValue(what: string, value: string): string {
  if (NOT_A_HEADER_VALUE.test(value)) {
    throw new Error(
      `${what} holds a character an HTTP header cannot carry (tab, visible ASCII or Latin-1 only)`,
    );
  }
  return value;
}

const RETRYABLE_4XX = new Set([408, 425, 429]);

function isPermanentRefusal(status: number): boolean {
  return status >= 400 && status < 500 && !RETRYABLE_4XX.has(status);
}

/** `Retry-After` as delay-seconds or an HTTP date, in milliseconds from `now`; never negative. */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/**
 * The reference from a 2xx body, or null when the body is absent, not JSON, too large or
 * lacks the field. The rail accepted the instruction either way, so this never fails.
 */
/**
 * One abort for a request and its body: the caller's cut (dispatch timeout, shutdown), the
 * rail's own timeout and, once a 2xx status is in, the bound on reading the reference. An
 * EventEmitter, which undici takes as a request's signal, rather than an AbortController per
 * delivery: creating an AbortSignal costs Node 20 more than the rest of a dispatch, and its
 * garbage sets the pace of the collections that decide the latency tail (issue 9). For the
 * same reason the caller's cut is heard through `whenCutShort`, not the request's signal.
 */
class RequestCut extends EventEmitter {
  aborted = false;
  reason: unknown;

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.emit('abort');
  }
}

async function readReference(body: Readable, field: string): Promise<string | null> {
  let text: string | null;
  try {
    text = await readBounded(body);
  } catch {
    return null;
  }
  if (text === null || text.length === 0) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof parsed !== 'object' || parsed === null) return null;
  const reference = (parsed as Record<string, unknown>)[field];
  if (typeof reference === 'string' && reference.length > 0) return reference;
  if (typeof reference === 'number' && Number.isFinite(reference)) return String(reference);
  return null;
}

/**
 * The body as text, or null past MAX_RESPONSE_BYTES (the rest is not read). Read by its
 * events rather than `for await`: a stream's async iterator made more garbage per delivery
 * than the rest of the rail (issue 9).
 */
function readBounded(body: Readable): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    body.on('data', (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > MAX_RESPONSE_BYTES) {
        body.destroy();
        resolve(null);
        return;
      }
      chunks.push(chunk);
    });
    body.once('end', () => resolve(Buffer.concat(chunks, size).toString('utf8')));
    body.once('error', reject);
    // Destroyed without an error (a cut that undici reports as a close): nothing more comes.
    body.once('close', () => resolve(null));
  });
}

/** Frees the connection for reuse; the body of a refusal is not recorded (it may echo the payload). */
async function discardBody(body: Dispatcher.ResponseData['body']): Promise<void> {
  await body.dump({ limit: MAX_RESPONSE_BYTES }).catch(() => {});
}

const MAX_ERROR_TEXT = 300;

function networkErrorText(error: unknown): string {
  // The socket's own error, or the cause a wrapping error (a TLS failure, say) carries.
  const failure = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  if (!(failure instanceof Error)) return 'the request to the rail failed';
  const code = (failure as NodeJS.ErrnoException).code;
  const text =
    code && !failure.message.includes(code) ? `${code}: ${failure.message}` : failure.message;
  return text.slice(0, MAX_ERROR_TEXT);
}
