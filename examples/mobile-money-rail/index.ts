/**
 * An example rail adapter written outside symphony-relay, for a mobile-money operator's
 * transfer API. Point the relayer at it with
 *
 *   SYMPHONY_RAILS='{"momo": {"type": "module", "module": "./examples/mobile-money-rail/index.ts",
 *                    "options": {"baseUrl": "https://operator.example", "apiKeyFile": "/run/secrets/momo"}}}'
 *
 * What every adapter must do, shown here:
 * - send the idempotency key with every delivery (here `X-Reference-Id`), so the operator
 *   de-duplicates the redelivery that follows a crash or a timeout;
 * - honour `request.signal` (pass it to fetch): it aborts on the dispatch timeout and at
 *   shutdown;
 * - map every answer to exactly one outcome: DISPATCHED (the operator has the instruction),
 *   RETRYABLE (it may not have; the relayer retries with backoff, honouring retryAfterMs) or
 *   FAILED (it refused the instruction itself; retrying cannot help);
 * - never log the payload or the credentials.
 */
import { readFileSync } from 'node:fs';
import type {
  DispatchOutcome,
  DispatchRequest,
  RailAdapter,
  RailAdapterFactory,
} from 'symphony-relay';

export interface MobileMoneyOptions {
  /** The operator's API root, e.g. https://operator.example. */
  baseUrl: string;
  /** File holding the API key (kept out of the rails configuration). */
  apiKeyFile: string;
}

/** The operator's refusal codes (HTTP 400/422 bodies): the instruction itself is wrong. */
const REFUSALS = ['PAYEE_NOT_FOUND', 'INVALID_AMOUNT', 'INSUFFICIENT_FUNDS', 'LIMIT_EXCEEDED'];
const ERROR_CODES = [...REFUSALS, 'OPERATOR_REFUSED', 'OPERATOR_BUSY', 'OPERATOR_UNAVAILABLE'];

const createMobileMoneyRail: RailAdapterFactory = (options) => {
  const { baseUrl, apiKeyFile } = parseOptions(options);
  const apiKey = readFileSync(apiKeyFile, 'utf8').trim();
  if (apiKey === '') throw new Error(`apiKeyFile ${apiKeyFile} is empty`);
  const endpoint = new URL('/v1/transfers', baseUrl);

  const rail: RailAdapter = {
    kind: 'mobile-money',
    errorCodes: ERROR_CODES,
    async dispatch(request: DispatchRequest): Promise<DispatchOutcome> {
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        authorization: `Bearer ${apiKey}`,
        'x-reference-id': request.idempotencyKey,
      };
      if (request.traceparent) headers.traceparent = request.traceparent;
      // fetch rejects when the signal aborts; the relayer records that as a TIMEOUT or
      // ABORTED retry by itself, so a network error is all this adapter has to name.
      let response: Response;
      try {
        response = await fetch(endpoint, {
          method: 'POST',
          headers,
          body: JSON.stringify({
            externalId: request.instructionId,
            payer: request.participantId,
            ...request.payload,
          }),
          signal: request.signal,
        });
      } catch (error) {
        if (request.signal.aborted) throw error;
        return { state: 'RETRYABLE', errorCode: 'OPERATOR_UNAVAILABLE' };
      }
      return outcomeOf(response);
    },
  };
  return rail;
};

export default createMobileMoneyRail;

async function outcomeOf(response: Response): Promise<DispatchOutcome> {
  const railCode = String(response.status);
  const parsed: unknown = await response.json().catch(() => null);
  const body = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<
    string,
    unknown
  >;
  // 409: the operator already has a transfer with this reference id, i.e. our own earlier
  // delivery got through. That is success, with the reference of the first delivery.
  if (response.ok || response.status === 409) {
    const transferId = typeof body.transferId === 'string' ? body.transferId : null;
    return { state: 'DISPATCHED', railReference: transferId, railCode };
  }
  if (response.status === 400 || response.status === 422) {
    const code = typeof body.code === 'string' && REFUSALS.includes(body.code) ? body.code : null;
    return { state: 'FAILED', errorCode: code ?? 'OPERATOR_REFUSED', railCode };
  }
  const retryAfter = Number(response.headers.get('retry-after'));
  return {
    state: 'RETRYABLE',
    errorCode: response.status === 429 ? 'OPERATOR_BUSY' : 'OPERATOR_UNAVAILABLE',
    ...(Number.isInteger(retryAfter) && retryAfter > 0 ? { retryAfterMs: retryAfter * 1000 } : {}),
    railCode,
  };
}

function parseOptions(options: Record<string, unknown>): MobileMoneyOptions {
  const { baseUrl, apiKeyFile } = options;
  if (typeof baseUrl !== 'string' || !/^https?:\/\//.test(baseUrl)) {
    throw new Error('options.baseUrl must be an http:// or https:// URL');
  }
  if (typeof apiKeyFile !== 'string' || apiKeyFile === '') {
    throw new Error('options.apiKeyFile must be the path of the file holding the API key');
  }
  return { baseUrl, apiKeyFile };
}
