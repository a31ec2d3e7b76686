import type { Logger } from 'pino';

/**
 * The contract between the relayer and a payment rail. An adapter turns one claimed outbox
 * item into exactly one outcome; the relayer records that outcome through the lease-fenced
 * completion function. Adapters may throw or hang: `dispatchSafely` turns both into outcomes.
 *
 * This file is part of the package's public API (src/index.ts): rail adapters written in a
 * user's own code implement these types.
 */
export interface DispatchRequest {
  outboxId: string;
  instructionId: string;
  participantId: string;
  sequenceId: string;
  /** Sent to the rail with every delivery so it can de-duplicate a redelivery after a crash. */
  idempotencyKey: string;
  railType: string;
  payload: Record<string, unknown>;
  /** 1 for the first delivery of this item, 2 for the first retry, and so on. */
  attempt: number;
  /** Aborted when the dispatch timed out or the relayer is shutting down. */
  signal: AbortSignal;
  /**
   * W3C trace context of this dispatch's span (`traceparent` header value), when tracing is
   * on; pass it to the rail so its spans join the payment's trace.
   */
  traceparent?: string;
}

export type DispatchOutcome =
  | { state: 'DISPATCHED'; railReference: string | null; railCode?: string }
  | {
      state: 'RETRYABLE';
      errorCode: string;
      errorMessage?: string;
      /** The rail's own hint (e.g. `Retry-After`); wins over the computed backoff. */
      retryAfterMs?: number;
      railCode?: string;
    }
  | { state: 'FAILED'; errorCode: string; errorMessage?: string; railCode?: string };

export interface RailAdapter {
  /** The adapter implementation (`sandbox`, `http`, ...), not the rail_type it serves; for logs. */
  readonly kind?: string;
  /**
   * The error codes this adapter can return. Metrics label attempts by error code only for
   * known codes (everything else is counted as `other`), so a rail's own codes stay visible
   * without letting an unbounded value explode the number of series.
   */
  readonly errorCodes?: readonly string[];
  dispatch(request: DispatchRequest): Promise<DispatchOutcome>;
  close?(): Promise<void>;
}

/** What a rail module's factory receives besides its options. */
export interface RailAdapterContext {
  /** The rail_type the adapter is registered under. */
  railType: string;
  /** The relayer's logger, bound to the rail; never log payloads or credentials. */
  logger: Logger;
}

/**
 * The default export of a rail module (`SYMPHONY_RAILS` entry `{"type": "module", ...}`):
 * called once at start with the entry's `options`; may be async.
 */
export type RailAdapterFactory = (
  options: Record<string, unknown>,
  context: RailAdapterContext,
) => RailAdapter | Promise<RailAdapter>;
