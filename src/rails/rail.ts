/**
 * The contract between the relayer and a payment rail. An adapter turns one claimed outbox
 * item into exactly one outcome; the relayer records that outcome through the lease-fenced
 * completion function. Adapters may throw or hang: `dispatchSafely` turns both into outcomes.
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
  /** The adapter implementation (`sandbox`, `http`), not the rail_type it is registered under. */
  readonly kind: string;
  dispatch(request: DispatchRequest): Promise<DispatchOutcome>;
  close?(): Promise<void>;
}
