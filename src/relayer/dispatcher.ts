import pLimit, { type LimitFunction } from 'p-limit';
import type { Logger } from 'pino';
import type { ClaimedItem } from '../db/outbox.ts';
import { NO_TRACING, type Tracing } from '../observability/tracing.ts';
import type { Span } from '@opentelemetry/api';
import { dispatchSafely, type TimedDispatchOutcome } from '../rails/dispatch.ts';
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
 */
export class Dispatcher {
  private readonly limit: LimitFunction;
  /**
   * Claimed items in the order submitted, from the first not yet started: released, not
   * dispatched, when shutdown comes first. An array with a moving start, not a map: a map
   * grown to a claim's worth and emptied again cost 2 µs per item (issue 9).
   */
  private queued: Ticket[] = [];
  private firstQueued = 0;
  /** Items submitted whose run has not finished (dispatch and recording). */
  private tasks = 0;
  /** Resolved when `tasks` next reaches zero. */
  private readonly whenSettled: (() => void)[] = [];
  private readonly dispatchOnSlot = (ticket: Ticket, claim: Span | undefined) =>
    this.dispatchOne(ticket, claim);
  /** Answered by the rail, outcome not yet recorded. */
  private unrecorded = 0;
  /** Aborted when the shutdown grace period ends: dispatches still running come back RETRYABLE. */
  private readonly shutdownSignal = new AbortController();

  constructor(private readonly options: DispatcherOptions) {
    this.limit = pLimit(options.concurrency);
  }

  freeSlots(): number {
    const { concurrency } = this.options;
    const taken = this.limit.activeCount + this.limit.pendingCount;
    return Math.max(0, Math.min(concurrency - taken, 2 * concurrency - taken - this.unrecorded));
  }

  inFlight(): number {
    return this.limit.activeCount;
  }

  /** `claim` is the span of the claim that leased the items; each dispatch span links to it. */
  submit(items: ClaimedItem[], claim?: Span): void {
    for (const item of items) {
      const ticket: Ticket = { item, state: 'waiting' };
      this.queued.push(ticket);
      this.tasks += 1;
      void this.run(ticket, claim);
    }
  }

  /**
   * One item from its slot to its recorded outcome. One async function per item rather than
   * a chain of then/finally callbacks, and a count rather than a set of task promises: this
   * runs once per item (issue 9).
   */
  private async run(ticket: Ticket, claim: Span | undefined): Promise<void> {
    const { item } = ticket;
    try {
      const dispatched = await this.limit(this.dispatchOnSlot, ticket, claim);
      if (!dispatched) return;
      this.unrecorded += 1;
      this.options.onSlotFreed();
      try {
        await this.options.completer.complete(item, dispatched.outcome, dispatched.span);
      } finally {
        this.unrecorded -= 1;
      }
    } finally {
      this.tasks -= 1;
      if (this.tasks === 0) for (const settled of this.whenSettled.splice(0)) settled();
      this.options.onSlotFreed();
    }
  }

  /**
   * Stops starting new dispatches; returns the claimed items that never started. Their
   * queued tasks still run, find themselves no longer waiting and return at once, so every
   * task promise settles (p-limit's clearQueue would leave them pending forever).
   */
  takeUnstarted(): ClaimedItem[] {
    const unstarted: ClaimedItem[] = [];
    for (let index = this.firstQueued; index < this.queued.length; index += 1) {
      const ticket = this.queued[index] as Ticket;
      if (ticket.state !== 'waiting') continue;
      ticket.state = 'withdrawn';
      unstarted.push(ticket.item);
    }
    this.queued = [];
    this.firstQueued = 0;
    return unstarted;
  }

  /**
   * Waits for running dispatches to finish and record their outcomes. When the grace period
   * ends first, the rest are aborted (recorded RETRYABLE, so the next delivery carries the same
   * idempotency key) and their completions are awaited. Returns false if it had to abort.
   */
  async drain(graceMs: number): Promise<boolean> {
    const finished = new Promise<true>((resolve) => {
      if (this.tasks === 0) resolve(true);
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

  /** Runs the rail call on a slot; the outcome is recorded after the slot is freed. */
  private async dispatchOne(
    ticket: Ticket,
    claim: Span | undefined,
  ): Promise<{ outcome: TimedDispatchOutcome; span: Span } | undefined> {
    if (ticket.state !== 'waiting') return undefined;
    ticket.state = 'started';
    this.forgetStarted();
    const { item } = ticket;
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

  /**
   * Moves the start past the tickets already started. Slots start tickets in the order they
   * were submitted (p-limit is first in, first out), so this is one step per item; the array
   * is emptied whenever every ticket in it has started.
   */
  private forgetStarted(): void {
    while (
      this.firstQueued < this.queued.length &&
      (this.queued[this.firstQueued] as Ticket).state !== 'waiting'
    ) {
      this.firstQueued += 1;
    }
    if (this.firstQueued === this.queued.length) {
      this.queued.length = 0;
      this.firstQueued = 0;
    }
  }
}

/** A claimed item's place in the queue of items waiting for a slot. */
interface Ticket {
  item: ClaimedItem;
  state: 'waiting' | 'started' | 'withdrawn';
}
