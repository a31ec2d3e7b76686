import type pg from 'pg';
import type { Logger } from 'pino';
import { isTransientDatabaseError, LeaseLostError } from '../db/errors.ts';
import {
  completeOutboxAttempt,
  completeOutboxBatch,
  type BatchCompletionResult,
  type ClaimedItem,
  type Completion,
  type CompletionState,
} from '../db/outbox.ts';
import { OTHER_ERROR_CODE, type RelayerMetrics } from '../observability/metrics.ts';
import { NO_TRACING, SPAN_ATTRIBUTES, type Tracing } from '../observability/tracing.ts';
import { SpanStatusCode, type Span } from '@opentelemetry/api';
import type { DispatchOutcome } from '../rails/rail.ts';
import { retryDelayMs, type RetryPolicy } from './backoff.ts';
import { dispatchLogFields, itemLogFields } from './item-log.ts';

const OUTCOME_LABEL: Record<CompletionState, 'dispatched' | 'retryable' | 'failed'> = {
  DISPATCHED: 'dispatched',
  RETRYABLE: 'retryable',
  FAILED: 'failed',
};

/**
 * Pauses between attempts to record an outcome while the database is unreachable (transient
 * errors only: a refused value is refused again): doubling from the first to the longest, and
 * kept up for as long as the lease leaves room. Giving up earlier meant the lease expired
 * unrecorded and the rail was paid a second time after a one-second database restart.
 */
const RECORD_RETRY_FIRST_MS = 100;
const RECORD_RETRY_LONGEST_MS = 2_000;

export const DEFAULT_MAX_BATCH = 256;
/**
 * Completion batches recorded at once, each on its own pool connection. Each commit waits
 * for its WAL flush; with two in flight the flush of one batch overlaps the work of the next
 * instead of queueing behind it. Four cost more server CPU per item than they hid (lock and
 * CPU contention with the claims): on the 2-core bench machine, alternating runs of 30,000
 * items drained at 9,678-9,762/s with four and 10,292-10,505/s with two, at 95-97 vs 84 µs
 * of backend CPU per item.
 */
export const MAX_COMPLETION_BATCHES_IN_FLIGHT = 2;
/**
 * While a batch is in flight, outcomes wait for it unless this many have gathered: a few
 * outcomes go with the next batch (one commit for them all), a crowd gets a batch of its own.
 */
const CONCURRENT_BATCH_AT = 16;

export interface CompleterOptions {
  pool: pg.Pool;
  workerId: string;
  retry: RetryPolicy;
  logger: Logger;
  metrics: RelayerMetrics;
  tracing?: Tracing;
  /** A RETRYABLE outcome was recorded: the item is due again at `at`. */
  onRetryScheduled: (at: Date) => void;
  /**
   * Buffer outcomes and record each buffer in one transaction (complete_outbox_batch).
   * Default true; false records every outcome in its own transaction.
   */
  batch?: boolean;
  /** Most outcomes recorded in one transaction. */
  maxBatch?: number;
}

type Outcome = DispatchOutcome & { latencyMs: number };

interface BufferedOutcome {
  item: ClaimedItem;
  outcome: Outcome;
  completion: Completion;
  span: Span;
  done: () => void;
}

/**
 * The one place an outcome becomes a ledger row. Completion is fenced by the lease in
 * the database: if another worker owns the item now (P7002, or lease_lost in a batch) we
 * count it and move on — retrying would only be refused again.
 *
 * Batching: every commit costs a WAL flush, so recording outcomes one transaction each caps
 * throughput (SPEC §4). Group commit without a timer: outcomes are gathered for one turn of
 * the event loop (setImmediate: the outcomes of a claimed batch that finish together go
 * together, and a lone outcome on a quiet queue waits microseconds, not milliseconds), then
 * recorded. While a batch is in flight, a few new outcomes wait for it and go with the next
 * one; CONCURRENT_BATCH_AT or more start a batch of their own, up to
 * MAX_COMPLETION_BATCHES_IN_FLIGHT at once (each up to maxBatch). Batches in flight at once
 * hold disjoint items and lock them in outbox_id order, exactly as batches of different
 * workers always could. complete() still resolves only once its own outcome has been
 * recorded (or given up on), so a dispatch slot is held until then.
 */
export class Completer {
  private readonly batching: boolean;
  private readonly maxBatch: number;
  private buffer: BufferedOutcome[] = [];
  private batchesInFlight = 0;
  private gathering = false;

  constructor(private readonly options: CompleterOptions) {
    this.batching = options.batch ?? true;
    this.maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
    if (!Number.isInteger(this.maxBatch) || this.maxBatch < 1) {
      throw new Error(`Completer maxBatch must be a positive integer, got ${this.maxBatch}`);
    }
  }

  /**
   * Records the outcome; never rejects (failures are logged and the lease left to expire).
   * `dispatch` is the span of the dispatch that produced it; the completion span is its child.
   */
  async complete(item: ClaimedItem, outcome: Outcome, dispatch?: Span): Promise<void> {
    const completion = this.completionOf(item, outcome);
    const span = (this.options.tracing ?? NO_TRACING).startCompletion(item, outcome, dispatch);
    try {
      if (!this.batching) return await this.completeOne(item, outcome, completion, span);
      return await new Promise<void>((done) => {
        this.buffer.push({ item, outcome, completion, span, done });
        this.gather();
      });
    } finally {
      span.end();
    }
  }

  private completionOf(item: ClaimedItem, outcome: Outcome): Completion {
    const retryDelaySeconds =
      outcome.state === 'RETRYABLE'
        ? Math.max(
            1,
            Math.ceil(
              retryDelayMs(item.attemptCount + 1, this.options.retry, outcome.retryAfterMs) / 1000,
            ),
          )
        : null;
    return {
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
  }

  /** Lets the outcomes that finish in this turn of the event loop join the same batch. */
  private gather(): void {
    if (this.gathering) return;
    this.gathering = true;
    setImmediate(() => {
      this.gathering = false;
      this.flush();
    });
  }

  /** Starts batches while outcomes wait and the rule above allows one more in flight. */
  private flush(): void {
    while (this.buffer.length > 0 && this.batchesInFlight < MAX_COMPLETION_BATCHES_IN_FLIGHT) {
      if (this.batchesInFlight > 0 && this.buffer.length < CONCURRENT_BATCH_AT) return;
      this.batchesInFlight += 1;
      void this.recordBatch(this.buffer.splice(0, this.maxBatch)).finally(() => {
        this.batchesInFlight -= 1;
        this.flush();
      });
    }
  }

  /**
   * Fallback rule: if the batch call fails for ANY reason, record its outcomes one by one
   * with the single-item path. That is always safe and needs no error classification:
   *  - the batch is one transaction, so a failed call recorded nothing, and the single
   *    path is fenced by the same lease, so nothing can be recorded twice (if the
   *    connection died after the commit, the single calls are refused as lease lost);
   *  - an item the batch cannot take (a value the database rejects) fails alone instead
   *    of taking its neighbours with it;
   *  - the single path already retries connection errors while the lease lasts.
   */
  private async recordBatch(batch: BufferedOutcome[]): Promise<void> {
    const { logger, pool, workerId } = this.options;
    let results: BatchCompletionResult[];
    try {
      results = await completeOutboxBatch(
        pool,
        workerId,
        batch.map((entry) => entry.completion),
      );
    } catch (error) {
      logger.warn(
        {
          event: 'completion_batch_failed',
          count: batch.length,
          err: { message: (error as Error).message },
        },
        'recording a batch of outcomes failed; recording them one by one',
      );
      await Promise.all(
        batch.map(({ item, outcome, completion, span, done }) =>
          this.completeOne(item, outcome, completion, span).finally(done),
        ),
      );
      return;
    }
    batch.forEach(({ item, outcome, completion, span, done }, index) => {
      try {
        const result = results[index];
        if (result === undefined || result.leaseLost || result.state === null) {
          this.reportLeaseLost(item, outcome, span);
        } else {
          this.reportRecorded(item, outcome, completion, result.state, span);
        }
      } catch (error) {
        this.reportNotRecorded(item, error, span);
      } finally {
        done();
      }
    });
  }

  private async completeOne(
    item: ClaimedItem,
    outcome: Outcome,
    completion: Completion,
    span: Span,
  ): Promise<void> {
    try {
      const recorded = await this.recordWhileLeased(item, () =>
        completeOutboxAttempt(this.options.pool, this.options.workerId, completion),
      );
      this.reportRecorded(item, outcome, completion, recorded.state, span);
    } catch (error) {
      if (error instanceof LeaseLostError) this.reportLeaseLost(item, outcome, span);
      else this.reportNotRecorded(item, error, span);
    }
  }

  private reportRecorded(
    item: ClaimedItem,
    outcome: Outcome,
    completion: Completion,
    recordedState: CompletionState,
    span: Span,
  ): void {
    const { logger, metrics } = this.options;
    span.setAttribute(SPAN_ATTRIBUTES.recordedState, recordedState);
    const retryDelaySeconds = completion.retryDelaySeconds ?? null;
    metrics.completed(
      item.railType,
      OUTCOME_LABEL[recordedState],
      outcome.latencyMs / 1000,
      (Date.now() - item.createdAt.getTime()) / 1000,
    );
    if (recordedState === 'RETRYABLE' && retryDelaySeconds !== null) {
      this.options.onRetryScheduled(new Date(Date.now() + retryDelaySeconds * 1000));
    }
    if (recordedState !== 'DISPATCHED') {
      const ceilingReached = outcome.state === 'RETRYABLE' && recordedState === 'FAILED';
      metrics.attemptFailed(
        item.railType,
        OUTCOME_LABEL[recordedState] as 'retryable' | 'failed',
        completion.errorCode ?? OTHER_ERROR_CODE,
        ceilingReached,
      );
      logger.warn(
        {
          event: 'attempt_failed',
          ...this.context(item, outcome),
          state: recordedState,
          errorCode: completion.errorCode,
          ...(ceilingReached ? { retryCeilingReached: true } : {}),
          retryDelaySeconds,
        },
        recordedState === 'RETRYABLE' ? 'dispatch will be retried' : 'dispatch failed for good',
      );
    }
  }

  private reportLeaseLost(item: ClaimedItem, outcome: Outcome, span: Span): void {
    span.setAttribute(SPAN_ATTRIBUTES.leaseLost, true);
    span.setStatus({ code: SpanStatusCode.ERROR, message: 'LEASE_LOST' });
    this.options.metrics.leaseLost(item.railType);
    this.options.logger.warn(
      { event: 'lease_lost', ...this.context(item, outcome), state: outcome.state },
      'completion refused (P7002): another worker owns this item now; not retrying',
    );
  }

  /** The lease expires and another worker's repair requeues the item: nothing is lost,
   * and the rail sees the same idempotency key again. */
  private reportNotRecorded(item: ClaimedItem, error: unknown, span: Span): void {
    span.setStatus({ code: SpanStatusCode.ERROR, message: 'outcome not recorded' });
    this.options.logger.error(
      {
        event: 'completion_failed',
        ...this.context(item),
        err: { message: (error as Error).message },
      },
      'could not record the outcome; the lease will expire and the item will be repaired',
    );
  }

  private context(item: ClaimedItem, outcome?: Outcome) {
    return { ...itemLogFields(item), ...(outcome ? dispatchLogFields(outcome) : {}) };
  }

  private async recordWhileLeased<T>(item: ClaimedItem, record: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await record();
      } catch (error) {
        const delay = Math.min(RECORD_RETRY_LONGEST_MS, RECORD_RETRY_FIRST_MS * 2 ** attempt);
        const leaseLeftMs = item.leaseExpiresAt.getTime() - Date.now();
        const worthRetrying = isTransientDatabaseError(error) && !(error instanceof LeaseLostError);
        if (!worthRetrying || leaseLeftMs <= delay) throw error;
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }
}
