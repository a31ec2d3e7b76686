import type pg from 'pg';
import type { Logger } from 'pino';
import { LeaseLostError } from '../db/errors.ts';
import { completeOutboxAttempt, type ClaimedItem, type CompletionState } from '../db/outbox.ts';
import type { RelayerMetrics } from '../observability/metrics.ts';
import type { DispatchOutcome } from '../rails/rail.ts';
import { retryDelayMs, type RetryPolicy } from './backoff.ts';

const OUTCOME_LABEL: Record<CompletionState, 'dispatched' | 'retryable' | 'failed'> = {
  DISPATCHED: 'dispatched',
  RETRYABLE: 'retryable',
  FAILED: 'failed',
};

/** Pauses between attempts to record an outcome while the database is briefly unreachable. */
const RECORD_RETRY_DELAYS_MS = [100, 500, 2_000];

export interface CompleterOptions {
  pool: pg.Pool;
  workerId: string;
  retry: RetryPolicy;
  logger: Logger;
  metrics: RelayerMetrics;
  /** A RETRYABLE outcome was recorded: the item is due again at `at`. */
  onRetryScheduled: (at: Date) => void;
}

/**
 * The one place an outcome becomes a ledger row. Completion is fenced by the lease in
 * the database: if another worker owns the item now (P7002) we count it and move on —
 * retrying would only be refused again.
 */
export class Completer {
  constructor(private readonly options: CompleterOptions) {}

  async complete(
    item: ClaimedItem,
    outcome: DispatchOutcome & { latencyMs: number },
  ): Promise<void> {
    const { logger, metrics, workerId } = this.options;
    const attemptNo = item.attemptCount + 1;
    const retryDelaySeconds =
      outcome.state === 'RETRYABLE'
        ? Math.max(
            1,
            Math.ceil(retryDelayMs(attemptNo, this.options.retry, outcome.retryAfterMs) / 1000),
          )
        : null;
    const completion = {
      outboxId: item.outboxId,
      leaseToken: item.leaseToken,
      state: outcome.state,
      railReference: outcome.state === 'DISPATCHED' ? outcome.railReference : null,
      railCode: outcome.railCode ?? null,
      errorCode: outcome.state === 'DISPATCHED' ? null : outcome.errorCode,
      errorMessage: outcome.state === 'DISPATCHED' ? null : (outcome.errorMessage ?? null),
      latencyMs: Math.round(outcome.latencyMs),
      retryDelaySeconds,
    };
    const context = { outboxId: item.outboxId, rail: item.railType, attemptNo };
    try {
      const recorded = await this.recordWhileLeased(item, () =>
        completeOutboxAttempt(this.options.pool, workerId, completion),
      );
      metrics.completed(
        item.railType,
        OUTCOME_LABEL[recorded.state],
        outcome.latencyMs / 1000,
        (Date.now() - item.createdAt.getTime()) / 1000,
      );
      if (recorded.state === 'RETRYABLE' && retryDelaySeconds !== null) {
        this.options.onRetryScheduled(new Date(Date.now() + retryDelaySeconds * 1000));
      }
      if (recorded.state !== 'DISPATCHED') {
        const errorCode =
          recorded.state === outcome.state || outcome.state === 'DISPATCHED'
            ? completion.errorCode
            : `${completion.errorCode} (retry ceiling reached)`;
        logger.warn(
          {
            event: 'attempt_failed',
            ...context,
            state: recorded.state,
            errorCode,
            retryDelaySeconds,
          },
          recorded.state === 'RETRYABLE' ? 'dispatch will be retried' : 'dispatch failed for good',
        );
      }
    } catch (error) {
      if (error instanceof LeaseLostError) {
        metrics.leaseLost(item.railType);
        logger.warn(
          { event: 'lease_lost', ...context, state: outcome.state },
          'completion refused (P7002): another worker owns this item now; not retrying',
        );
        return;
      }
      // The lease expires and another worker's repair requeues the item: nothing is lost,
      // and the rail sees the same idempotency key again.
      logger.error(
        { event: 'completion_failed', ...context, err: { message: (error as Error).message } },
        'could not record the outcome; the lease will expire and the item will be repaired',
      );
    }
  }

  private async recordWhileLeased<T>(item: ClaimedItem, record: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await record();
      } catch (error) {
        const delay = RECORD_RETRY_DELAYS_MS[attempt];
        const leaseLeftMs = item.leaseExpiresAt.getTime() - Date.now();
        if (error instanceof LeaseLostError || delay === undefined || leaseLeftMs <= delay)
          throw error;
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }
}
