import { abortedOutcome } from './abort.ts';
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
}

export const HTTP_DEFAULTS = {
  idempotencyHeader: 'Idempotency-Key',
  referenceField: 'reference',
} as const;

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const MAX_TIMEOUT_MS = 600_000;
/** Enough for any reference-bearing acknowledgement; a larger body is not read further. */
const MAX_RESPONSE_BYTES = 64 * 1024;

export function parseHttpOptions(reader: RailOptionsReader): HttpRailOptions {
  reader.allowOnly(['type', 'url', 'headers', 'idempotencyHeader', 'referenceField', 'timeoutMs']);
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

  constructor(
    private readonly options: HttpRailOptions,
    private readonly now: () => number = Date.now,
  ) {}

  async dispatch(request: DispatchRequest): Promise<DispatchOutcome> {
    const signal =
      this.options.timeoutMs === undefined
        ? request.signal
        : AbortSignal.any([request.signal, AbortSignal.timeout(this.options.timeoutMs)]);

    let response: Response;
    try {
      response = await fetch(this.options.url, {
        method: 'POST',
        headers: this.headersFor(request),
        body: JSON.stringify({
          outboxId: request.outboxId,
          instructionId: request.instructionId,
          participantId: request.participantId,
          sequenceId: request.sequenceId,
          attempt: request.attempt,
          payload: request.payload,
        }),
        // A redirect would replay the POST, auth headers included, to an endpoint nobody configured.
        redirect: 'manual',
        signal,
      });
    } catch (error) {
      if (signal.aborted) return abortedOutcome(signal);
      return {
        state: 'RETRYABLE',
        errorCode: 'NETWORK_ERROR',
        errorMessage: networkErrorText(error),
      };
    }
    return this.outcomeOf(response);
  }

  private headersFor(request: DispatchRequest): Headers {
    const headers = new Headers(this.options.headers);
    // Set after the static headers so configuration can never override per-item identity.
    headers.set('content-type', 'application/json');
    headers.set('accept', 'application/json');
    headers.set(this.options.idempotencyHeader, request.idempotencyKey);
    headers.set('X-Symphony-Participant-Id', request.participantId);
    headers.set('X-Symphony-Sequence-Id', request.sequenceId);
    return headers;
  }

  private async outcomeOf(response: Response): Promise<DispatchOutcome> {
    const status = response.status;
    const railCode = String(status);
    if (status >= 200 && status < 300) {
      const railReference = await readReference(response, this.options.referenceField);
      return { state: 'DISPATCHED', railReference, railCode };
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
