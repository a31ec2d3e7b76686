import { Agent, fetch, Headers, type Response } from 'undici';
import { abortedOutcome } from './abort.ts';
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
  /** Mutual TLS, private CA, server name (read from files at start). */
  tls?: HttpTlsOptions;
  /** HMAC-SHA256 request signing (key read from a file at start). */
  signing?: HttpSigningOptions;
}

export const HTTP_DEFAULTS = {
  idempotencyHeader: 'Idempotency-Key',
  referenceField: 'reference',
} as const;

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
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
  const expected = 'an object of header name to string value (no line breaks)';
  for (const [name, value] of Object.entries(headers)) {
    if (!HEADER_NAME.test(name) || typeof value !== 'string' || /[\r\n\0]/.test(value)) {
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

  constructor(
    private readonly options: HttpRailOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.agent = new Agent({ connect: { ...options.tls, rejectUnauthorized: true } });
  }

  async dispatch(request: DispatchRequest): Promise<DispatchOutcome> {
    let built: { headers: Headers; body: string };
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
    // Aborts the body read alone once the status is in (see REFERENCE_READ_TIMEOUT_MS).
    const bodyRead = new AbortController();
    const signals = [request.signal, bodyRead.signal];
    if (this.options.timeoutMs !== undefined)
      signals.push(AbortSignal.timeout(this.options.timeoutMs));
    const signal = AbortSignal.any(signals);

    let response: Response;
    try {
      response = await fetch(this.options.url, {
        method: 'POST',
        headers: built.headers,
        body: built.body,
        // A redirect would replay the POST, auth headers included, to an endpoint nobody configured.
        redirect: 'manual',
        signal,
        dispatcher: this.agent,
      });
    } catch (error) {
      if (signal.aborted) return abortedOutcome(signal);
      return {
        state: 'RETRYABLE',
        errorCode: 'NETWORK_ERROR',
        errorMessage: networkErrorText(error),
      };
    }
    return this.outcomeOf(response, bodyRead);
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** Throws when the item cannot travel as HTTP (e.g. a header value outside Latin-1). */
  private build(request: DispatchRequest): { headers: Headers; body: string } {
    const body = JSON.stringify({
      outboxId: request.outboxId,
      instructionId: request.instructionId,
      participantId: request.participantId,
      sequenceId: request.sequenceId,
      attempt: request.attempt,
      payload: request.payload,
    });
    const headers = new Headers(this.options.headers);
    // Set after the static headers so configuration can never override per-item identity.
    headers.set('content-type', 'application/json');
    headers.set('accept', 'application/json');
    headers.set(this.options.idempotencyHeader, request.idempotencyKey);
    headers.set('X-Symphony-Participant-Id', request.participantId);
    headers.set('X-Symphony-Sequence-Id', request.sequenceId);
    if (request.traceparent) headers.set('traceparent', request.traceparent);
    const signing = this.options.signing;
    if (signing) {
      const timestamp = String(Math.floor(this.now() / 1000));
      headers.set(signing.timestampHeader, timestamp);
      headers.set(signing.signatureHeader, signRequest(signing.key, timestamp, body));
    }
    return { headers, body };
  }

  private async outcomeOf(response: Response, bodyRead: AbortController): Promise<DispatchOutcome> {
    const status = response.status;
    const railCode = String(status);
    if (status >= 200 && status < 300) {
      // DISPATCHED from here on, whatever the body does: the rail has accepted the payment.
      const timer = setTimeout(() => bodyRead.abort(), REFERENCE_READ_TIMEOUT_MS);
      try {
        const railReference = await readReference(response, this.options.referenceField);
        return { state: 'DISPATCHED', railReference, railCode };
      } finally {
        clearTimeout(timer);
      }
    }
    await discardBody(response);
    const errorCode = `HTTP_${status}`;
    const errorMessage = `the rail answered HTTP ${status}${response.statusText ? ` ${response.statusText}` : ''}`;
    if (isPermanentRefusal(status)) return { state: 'FAILED', errorCode, errorMessage, railCode };
    const outcome: DispatchOutcome = { state: 'RETRYABLE', errorCode, errorMessage, railCode };
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), this.now());
    if (retryAfterMs !== undefined) outcome.retryAfterMs = retryAfterMs;
    return outcome;
  }
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
async function readReference(response: Response, field: string): Promise<string | null> {
  let text: string | null;
  try {
    text = await readBounded(response);
  } catch {
    return null;
  }
  if (text === null || text.length === 0) return null;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof body !== 'object' || body === null) return null;
  const reference = (body as Record<string, unknown>)[field];
  if (typeof reference === 'string' && reference.length > 0) return reference;
  if (typeof reference === 'number' && Number.isFinite(reference)) return String(reference);
  return null;
}

async function readBounded(response: Response): Promise<string | null> {
  if (!response.body) return null;
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_RESPONSE_BYTES) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Frees the connection for reuse; the body of a refusal is not recorded (it may echo the payload). */
async function discardBody(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => {});
}

const MAX_ERROR_TEXT = 300;

function networkErrorText(error: unknown): string {
  // fetch wraps the socket error ("fetch failed"); the cause says what actually happened.
  const cause = error instanceof Error ? error.cause : undefined;
  let text = error instanceof Error ? error.message : 'the request to the rail failed';
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    text = code && !cause.message.includes(code) ? `${code}: ${cause.message}` : cause.message;
  }
  return text.slice(0, MAX_ERROR_TEXT);
}
