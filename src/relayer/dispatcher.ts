import { setMaxListeners } from 'node:events';
import pLimit, { type LimitFunction } from 'p-limit';
import type { Logger } from 'pino';
import type { ClaimedItem } from '../db/outbox.ts';
import type { RelayerMetrics } from '../observability/metrics.ts';
import { NO_TRACING, type Tracing } from '../observability/tracing.ts';
import type { Span } from '@opentelemetry/api';
import { dispatchSafely } from '../rails/dispatch.ts';
import type { RailRegistry } from '../rails/registry.ts';
import type { Completer } from './completer.ts';
import { dispatchLogFields, itemLogFields } from './item-log.ts';

export interface DispatcherOptions {
  concurrency: number;
  dispatchTimeoutMs: number;
  rails: RailRegistry;
  completer: Completer;
  logger: Logger;
  metrics: RelayerMetrics;
  tracing?: Tracing;
  /** Called whenever a slot frees, so the relayer can claim more while a backlog remains. */
  onSlotFreed: () => void;
}

/**
 * Runs claimed items on a fixed number of dispatch slots. The relayer claims no more
 * than freeSlots(), so an item's lease starts when its dispatch can start.
 */
export class Dispatcher {
  private readonly limit: LimitFunction;
  /** Claimed but not yet started: released, not dispatched, when shutdown comes first. */
  private readonly waiting = new Map<string, ClaimedItem>();
  private readonly running = new Set<Promise<void>>();
  /** Aborted when the shutdown grace period ends: dispatches still running come back RETRYABLE. */
  private readonly shutdownSignal = new AbortController();

  constructor(private readonly options: DispatcherOptions) {
    this.limit = pLimit(options.concurrency);
    // Every running dispatch listens on this one signal.
    setMaxListeners(options.concurrency + 1, this.shutdownSignal.signal);
  }

  freeSlots(): number {
    return Math.max(0, this.options.concurrency - this.limit.activeCount - this.limit.pendingCount);
  }

  inFlight(): number {
    return this.limit.activeCount;
  }

  /** `claim` is the span of the claim that leased the items; each dispatch span links to it. */
  submit(items: ClaimedItem[], claim?: Span): void {
    for (const item of items) {
      this.waiting.set(item.outboxId, item);
      const run = this.limit(() => this.dispatchOne(item, claim)).finally(() => {
        this.running.delete(run);
        this.reportSlots();
        this.options.onSlotFreed();
      });
      this.running.add(run);
    }
    this.reportSlots();
  }

  /**
   * Stops starting new dispatches; returns the claimed items that never started. Their
   * queued tasks still run, find themselves no longer waiting and return at once, so every
   * task promise settles (p-limit's clearQueue would leave them pending forever).
   */
  takeUnstarted(): ClaimedItem[] {
    const unstarted = [...this.waiting.values()];
    this.waiting.clear();
    this.reportSlots();
    return unstarted;
  }

  /**
   * Waits for running dispatches to finish and record their outcomes. When the grace period
   * ends first, the rest are aborted (recorded RETRYABLE, so the next delivery carries the same
   * idempotency key) and their completions are awaited. Returns false if it had to abort.
   */
  async drain(graceMs: number): Promise<boolean> {
    const finished = Promise.allSettled([...this.running]).then(() => true as const);
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), graceMs);
    });
    const inTime = await Promise.race([finished, graceOver]);
    clearTimeout(timer);
    if (!inTime) {
      this.shutdownSignal.abort(new Error('shutdown grace period over'));
      await finished;
    }
    return inTime;
  }

  private async dispatchOne(item: ClaimedItem, claim: Span | undefined): Promise<void> {
    if (!this.waiting.delete(item.outboxId)) return;
    this.reportSlots();
    const tracing = this.options.tracing ?? NO_TRACING;
    const span = tracing.startDispatch(item, claim);
    // With tracing off the rail still gets the producer's context, so its spans join that trace.
    const traceparent = tracing.traceparentOf(span) ?? item.traceparent ?? undefined;
    const outcome = await dispatchSafely(
      this.options.rails,
      {
        outboxId: item.outboxId,
        instructionId: item.instructionId,
        participantId: item.participantId,
        sequenceId: item.sequenceId,
        idempotencyKey: item.idempotencyKey,
        railType: item.railType,
        payload: item.payload,
        attempt: item.attemptCount + 1,
        ...(traceparent ? { traceparent } : {}),
      },
      { timeoutMs: this.options.dispatchTimeoutMs, signal: this.shutdownSignal.signal },
    );
    tracing.endDispatch(span, outcome);
    this.options.logger.debug(
      {
        event: 'dispatch',
        ...itemLogFields(item),
        state: outcome.state,
        ...(outcome.state === 'DISPATCHED' ? {} : { errorCode: outcome.errorCode }),
        ...dispatchLogFields(outcome),
      },
      'dispatch attempt finished',
    );
    await this.options.completer.complete(item, outcome, span);
  }

  private reportSlots(): void {
    this.options.metrics.setSlots(this.limit.activeCount, this.freeSlots());
  }
}
