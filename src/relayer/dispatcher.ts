import type { Logger } from 'pino';
import type { ClaimedItem } from '../db/outbox.ts';
import { NO_TRACING, type Tracing } from '../observability/tracing.ts';
import type { Span } from '@opentelemetry/api';
import {
  dispatchSafely,
  type DispatchOptions,
  type TimedDispatchOutcome,
} from '../rails/dispatch.ts';
import type { RailRegistry } from '../rails/registry.ts';
import type { Completer } from './completer.ts';
import { dispatchLogFields, itemLogFields } from './item-log.ts';

export interface DispatcherOptions {
  concurrency: number;
  dispatchTimeoutMs: number;
  rails: RailRegistry;
  completer: Completer;
  logger: Logger;
  tracing?: Tracing;
  /** Called whenever a slot frees, so the relayer can claim more while a backlog remains. */
  onSlotFreed: () => void;
}

/**
 * Runs claimed items on a fixed number of dispatch slots. The relayer claims no more
 * than freeSlots(), so an item's lease starts when its dispatch can start.
 *
 * A slot is the rail's: it is held while the rail call runs and freed when the rail has
 * answered, so the next claim's round trip overlaps the recording of the last outcomes
 * (holding the slot until the outcome's commit serialised claim, dispatch and commit for
 * every group of slots). Outcomes waiting
 * to be recorded are bounded too: up to `concurrency` of them wait without taking a slot,
 * beyond that each one keeps a slot taken, so a worker holds at most 2 × concurrency leases
 * and a slow database stops its claims instead of growing a backlog in memory.
 *
 * The slots are a count and a first-in, first-out queue of the items waiting for one. This
 * queue is also what shutdown takes back unstarted, so it is the only one: with p-limit in
 * front there were two queues to keep in step, and p-limit's promises, bound functions and
 * queue nodes were a third of the dispatch path's garbage (issue 9).
 */
export class Dispatcher {
  /** Items waiting for a slot, in the order submitted, from `firstWaiting` on. */
  private waiting: ClaimedItem[] = [];
  private firstWaiting = 0;
  /** The claim span of each waiting item, at the same index (undefined with tracing off). */
  private waitingClaims: (Span | undefined)[] = [];
  /** Rail calls running: the slots taken. */
  private active = 0;
  /** Items started whose run has not finished (dispatch and recording). */
  private running = 0;
  /** Resolved when nothing runs and nothing waits. */
  private readonly whenSettled: (() => void)[] = [];
  /** Answered by the rail, outcome not yet recorded. */
  private unrecorded = 0;
  /** Aborted when the shutdown grace period ends: dispatches still running come back RETRYABLE. */
  private readonly shutdownSignal = new AbortController();
  private readonly dispatchOptions: DispatchOptions;

  constructor(private readonly options: DispatcherOptions) {
    this.dispatchOptions = {
      timeoutMs: options.dispatchTimeoutMs,
      signal: this.shutdownSignal.signal,
    };
  }

  freeSlots(): number {
    const { concurrency } = this.options;
    const taken = this.active + this.waitingCount();
    return Math.max(0, Math.min(concurrency - taken, 2 * concurrency - taken - this.unrecorded));
  }

  inFlight(): number {
    return this.active;
  }

  /** `claim` is the span of the claim that leased the items; each dispatch span links to it. */
  submit(items: ClaimedItem[], claim?: Span): void {
    for (const item of items) {
      this.waiting.push(item);
      this.waitingClaims.push(claim);
    }
    this.startWaiting();
  }

  /**
   * Stops starting new dispatches; returns the claimed items that never started, which
   * leave the queue (nothing else will start them).
   */
  takeUnstarted(): ClaimedItem[] {
    const unstarted = this.waiting.slice(this.firstWaiting);
    this.waiting = [];
    this.waitingClaims = [];
    this.firstWaiting = 0;
    this.settleIfIdle();
    return unstarted;
  }

  /**
   * Waits for running dispatches to finish and record their outcomes. When the grace period
   * ends first, the rest are aborted (recorded RETRYABLE, so the next delivery carries the same
   * idempotency key) and their completions are awaited. Returns false if it had to abort.
   */
  async drain(graceMs: number): Promise<boolean> {
    const finished = new Promise<true>((resolve) => {
      if (this.isIdle()) resolve(true);
      else this.whenSettled.push(() => resolve(true));
    });
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

  private waitingCount(): number {
    return this.waiting.length - this.firstWaiting;
  }

  /** Starts waiting items, first in first out, while slots are free. */
  private startWaiting(): void {
    while (this.active < this.options.concurrency && this.firstWaiting < this.waiting.length) {
      const index = this.firstWaiting;
      const item = this.waiting[index] as ClaimedItem;
      const claim = this.waitingClaims[index];
      this.firstWaiting += 1;
      this.active += 1;
      this.running += 1;
      void this.run(item, claim);
    }
    if (this.firstWaiting === this.waiting.length) {
      this.waiting.length = 0;
      this.waitingClaims.length = 0;
      this.firstWaiting = 0;
    }
  }

  /**
   * One item from its slot to its recorded outcome: one async function per item, and counts
   * rather than sets of promises, because this runs once per item (issue 9). The slot is
   * freed, and the next waiting item started, as soon as the rail has answered.
   */
  private async run(item: ClaimedItem, claim: Span | undefined): Promise<void> {
    try {
      let dispatched: { outcome: TimedDispatchOutcome; span: Span };
      try {
        dispatched = await this.dispatchOne(item, claim);
      } finally {
        this.active -= 1;
        this.startWaiting();
      }
      this.unrecorded += 1;
      this.options.onSlotFreed();
      try {
        await this.options.completer.complete(item, dispatched.outcome, dispatched.span);
      } finally {
        this.unrecorded -= 1;
      }
    } finally {
      this.running -= 1;
      this.settleIfIdle();
      this.options.onSlotFreed();
    }
  }

  private isIdle(): boolean {
    return this.running === 0 && this.waitingCount() === 0;
  }

  private settleIfIdle(): void {
    if (this.isIdle()) for (const settled of this.whenSettled.splice(0)) settled();
  }

  /** Runs the rail call on a slot; the outcome is recorded after the slot is freed. */
  private async dispatchOne(
    item: ClaimedItem,
    claim: Span | undefined,
  ): Promise<{ outcome: TimedDispatchOutcome; span: Span }> {
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
      this.dispatchOptions,
    );
    tracing.endDispatch(span, outcome);
    // Checked first: the fields are built per item, and at the default level nobody reads them.
    if (this.options.logger.isLevelEnabled('debug')) {
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
    }
    return { outcome, span };
  }
}
