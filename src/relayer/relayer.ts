import type pg from 'pg';
import type { Logger } from 'pino';
import { activePauses, railOverview } from '../db/controls.ts';
import {
  claimOutboxBatch,
  outboxNextAttemptAt,
  type ClaimedItem,
  outboxQueueSample,
  releaseOutboxLeases,
  repairExpiredLeases,
} from '../db/outbox.ts';
import type { RelayerMetrics, WakeupSource } from '../observability/metrics.ts';
import type { Readiness } from '../observability/server.ts';
import { NO_TRACING, type Tracing } from '../observability/tracing.ts';
import type { RailRegistry } from '../rails/registry.ts';
import type { RetryPolicy } from './backoff.ts';
import { Completer } from './completer.ts';
import { Dispatcher } from './dispatcher.ts';
import { Ticker } from './ticker.ts';
import { Wakeup } from './wakeup.ts';

/**
 * A worker's connections, acting as the executor role, in three pools so each kind of work
 * has its own: the hot path never waits behind maintenance nor maintenance behind it, and a
 * backend compiles only the functions of its kind (a claim and a completion compiled on
 * every connection of one shared pool cost each start about 100 ms of CPU on the 2-core
 * bench machine; issue 9).
 */
export interface RelayerPools {
  /** Claims (one at a time, see MAX_CLAIMS_IN_FLIGHT), and releasing unstarted leases at stop. */
  claims: pg.Pool;
  /** Recording outcomes. */
  completions: pg.Pool;
  /**
   * The repair, the queue sample, pauses and rail controls, and the earliest-retry lookup after
   * a claim found nothing (on the one claim connection, a claim woken meanwhile would wait).
   */
  background: pg.Pool;
}

export interface RelayerOptions {
  pools: RelayerPools;
  /** LISTEN connection string, or null for poll-only mode. */
  listenConnectionString: string | null;
  workerId: string;
  concurrency: number;
  batchSize: number;
  leaseSeconds: number;
  dispatchTimeoutMs: number;
  pollIntervalMs: number;
  repairIntervalMs: number;
  repairBatchSize: number;
  queueStatsIntervalMs: number;
  shutdownGraceMs: number;
  retry: RetryPolicy;
  /** Group-commit outcomes in batches (default) or record each in its own transaction. */
  completionBatching?: boolean;
  rails: RailRegistry;
  logger: Logger;
  metrics: RelayerMetrics;
  /** Spans for claims, dispatches and completions; off unless configured. */
  tracing?: Tracing;
}

/**
 * Claims under way at once. One is enough to keep the slots busy: under a backlog a claim
 * starts when a full claim's worth of slots is free (at most half of them, see refillAt), so
 * the other half is still dispatching while it runs. A second claim of the same worker found
 * the first one's rows at the head of the due index, locked, and stepped over each of them
 * (SKIP LOCKED reads the row to see its lock): on the 2-core bench machine, five alternating
 * drains of 20,000 at the defaults with two ran at 11,227-17,353 items/s and 62-96.5 µs of
 * backend CPU per item, with one at 12,262-18,705 and 60-87.5 µs, faster in each pair (issue
 * 9). Workers of a fleet still claim side by side. Each claim holds a pool connection.
 */
export const MAX_CLAIMS_IN_FLIGHT = 1;

/**
 * The earliest-retry lookup after a claim that found the queue empty runs at most this
 * often. A retry is recorded at least 1 s before it falls due (the schema refuses a shorter
 * delay), so a lookup deferred by this much still schedules it in time; at 1,000 items/s the
 * lookup after every claim was a query per claim.
 */
const NEXT_DUE_LOOKUP_INTERVAL_MS = 250;

/** Bounds one repair run; a larger backlog of expired leases is taken over several ticks. */
const MAX_REPAIR_CHUNKS_PER_RUN = 10;

type State = 'idle' | 'running' | 'stopping' | 'stopped';

export interface ShutdownReport {
  /** In-flight dispatches finished within the grace period (none had to be aborted). */
  drainedInTime: boolean;
  released: number;
}

/**
 * Assembles the worker: wake-ups trigger a claim loop that never claims more than free
 * dispatch slots; dispatches run on those slots and record their outcome through the
 * lease-fenced completion; background tickers repair expired leases and sample queue depth.
 */
export class Relayer {
  private state: State = 'idle';
  private readonly dispatcher: Dispatcher;
  private readonly wakeup: Wakeup;
  private readonly repairer: Ticker;
  private readonly queueSampler: Ticker;
  /** Claims under way (at most MAX_CLAIMS_IN_FLIGHT). */
  private readonly claims = new Set<Promise<void>>();
  /** Dispatch slots promised to claims under way. */
  private reservedSlots = 0;
  /** A wake-up arrived while a claim was under way on a quiet queue: claim once more after it. */
  private claimRequested = false;
  /** The last claim came back full or stopped for lack of slots: more work is likely waiting. */
  private backlog = false;
  /** When the last earliest-retry lookup started, and the timer of a deferred one. */
  private nextDueLookedUpAt = 0;
  private deferredNextDue: NodeJS.Timeout | undefined;
  private databaseReachable = true;
  /** Claimed by a claim that was under way when stop() began: released, never dispatched. */
  private readonly claimedWhileStopping: ClaimedItem[] = [];
  /**
   * Free slots that make a claim worth its round trip while a backlog remains: a full claim,
   * or half the slots if that is fewer, so half of them stay busy while the claim runs. Refilling
   * at half a claim, a drain of 20,000 at the defaults ran 126 claims instead of 81, each with
   * a statement's fixed cost in the server on top of its items' (issue 9).
   */
  private readonly refillAt: number;
  /** Only items of these rail types are claimed: the rest wait for a worker that serves them. */
  private readonly railTypes: readonly string[];

  constructor(private readonly options: RelayerOptions) {
    const { logger, metrics } = options;
    this.railTypes = options.rails.railTypes();
    if (this.railTypes.length === 0) throw new Error('a relayer needs at least one rail adapter');
    this.refillAt = Math.max(1, Math.min(options.batchSize, Math.floor(options.concurrency / 2)));
    const completer = new Completer({
      pool: options.pools.completions,
      workerId: options.workerId,
      retry: options.retry,
      batch: options.completionBatching ?? true,
      logger,
      metrics,
      tracing: options.tracing,
      // Wake this worker when its own retry falls due, without fast polling.
      onRetryScheduled: (at) => this.wakeup.scheduleAt(at),
    });
    this.dispatcher = new Dispatcher({
      concurrency: options.concurrency,
      dispatchTimeoutMs: options.dispatchTimeoutMs,
      rails: options.rails,
      completer,
      logger,
      tracing: options.tracing,
      // Under a backlog, refill when refillAt slots are free rather than on every freed
      // slot: a claim per finished item would cost a round trip per item.
      onSlotFreed: () => {
        if (this.backlog && this.dispatcher.freeSlots() - this.reservedSlots >= this.refillAt) {
          this.wake('drain');
        }
      },
    });
    this.wakeup = new Wakeup({
      listenConnectionString: options.listenConnectionString,
      pollIntervalMs: options.pollIntervalMs,
      logger,
      onWake: (source) => {
        if (source === 'notify') metrics.notificationReceived();
        this.wake(source);
      },
      onListenerState: (connected) => metrics.setListenerConnected(connected),
    });
    this.repairer = new Ticker(
      options.repairIntervalMs,
      () => this.repair(),
      (error) => this.backgroundError('repair', error),
    );
    this.queueSampler = new Ticker(
      options.queueStatsIntervalMs,
      () => this.sampleQueue(),
      (error) => this.backgroundError('queue_stats', error),
      0.1,
    );
  }

  async start(): Promise<void> {
    if (this.state !== 'idle') throw new Error(`relayer cannot start from state ${this.state}`);
    const { logger, metrics, workerId } = this.options;
    await this.wakeup.start();
    this.state = 'running';
    metrics.setWorkerUp(true);
    metrics.readSlotsFrom(() => ({
      inFlight: this.dispatcher.inFlight(),
      free: this.dispatcher.freeSlots(),
    }));
    metrics.tick();
    this.repairer.start();
    this.queueSampler.start();
    logger.info(
      {
        event: 'worker_started',
        workerId,
        concurrency: this.options.concurrency,
        pollOnly: this.wakeup.pollOnly,
        rails: this.options.rails.railTypes(),
      },
      'relayer started',
    );
    void this.queueSampler.runNow();
    this.wake('startup');
  }

  /** Stop claiming; finish (or, after the grace period, abort) in-flight work; release the rest. */
  async stop(): Promise<ShutdownReport> {
    if (this.state !== 'running') return { drainedInTime: true, released: 0 };
    const { logger, metrics, workerId } = this.options;
    this.state = 'stopping';
    logger.info(
      { event: 'worker_stopping', inFlight: this.dispatcher.inFlight() },
      'relayer stopping',
    );
    await this.wakeup.stop();
    clearTimeout(this.deferredNextDue);
    await Promise.all([...this.claims]);
    const unstarted = [...this.claimedWhileStopping.splice(0), ...this.dispatcher.takeUnstarted()];
    const released = await this.release(unstarted);
    const drainedInTime = await this.dispatcher.drain(this.options.shutdownGraceMs);
    if (!drainedInTime) {
      logger.warn(
        { event: 'grace_period_over', graceMs: this.options.shutdownGraceMs },
        'in-flight dispatches outlived the grace period; aborted and recorded as RETRYABLE',
      );
    }
    await Promise.all([this.repairer.stop(), this.queueSampler.stop()]);
    metrics.setWorkerUp(false);
    metrics.setSlots(0, 0);
    this.state = 'stopped';
    logger.info({ event: 'worker_stopped', workerId, released, drainedInTime }, 'relayer stopped');
    return { drainedInTime, released };
  }

  readiness(): Readiness {
    const checks = [
      { name: 'shutdown', ok: this.state === 'running', detail: `state ${this.state}` },
      { name: 'database', ok: this.databaseReachable },
      {
        name: 'listener',
        ok: this.wakeup.pollOnly || this.wakeup.listenerConnected,
        detail: this.wakeup.pollOnly ? 'poll-only mode' : undefined,
      },
    ];
    return { ready: checks.every((check) => check.ok), checks };
  }

  /**
   * Looks for work: starts claims while slots are free, or, if a claim is already under
   * way on a quiet queue, asks for one more after it (a NOTIFY that arrives during a claim
   * may name an item that claim's snapshot missed). Counted once per wake-up that claims.
   */
  private wake(source: WakeupSource): void {
    if (this.state !== 'running') return;
    if (this.claims.size > 0 && !this.backlog) {
      this.claimRequested = true;
      return;
    }
    // Liveness: ticks when a wake-up finds no claim under way, and when a claim starts or
    // returns, so claims stuck on the database stop the ticks and /healthz fails, however
    // many wake-ups keep arriving.
    if (this.claims.size === 0) this.options.metrics.tick();
    const started = this.fill(source === 'drain');
    // A claim under way, or no slot free: this wake-up's items may be newer than its
    // snapshot, so it is owed a claim once one can start (dropping it left items waiting
    // for the next poll, seconds of tail latency at 1,000/s).
    if (started === 0 && this.claims.size > 0) this.claimRequested = true;
    if (started > 0 || this.claims.size === 0) this.options.metrics.wakeup(source);
  }

  /**
   * Starts claims until the free slots are spoken for or MAX_CLAIMS_IN_FLIGHT claims are under
   * way. Each claim reserves the slots it asks for, so claims never lease more items than
   * there are slots to start them (an item's lease starts when its dispatch can start). While
   * a backlog remains a refill (or a claim alongside another, if more than one may run) starts
   * only when at least refillAt slots are left for it; on a quiet queue there is one claim at
   * a time.
   */
  private fill(refilling = false): number {
    let started = 0;
    while (this.state === 'running' && this.claims.size < MAX_CLAIMS_IN_FLIGHT) {
      const available = this.dispatcher.freeSlots() - this.reservedSlots;
      if (available <= 0) {
        this.backlog = true;
        break;
      }
      // A refill (after a full claim, or as slots free under a backlog) waits for refillAt
      // free slots even with no claim under way, or the claim after a full one took the two
      // or three slots freed while it ran. Any other wake-up with no claim under way claims
      // what is free: the backlog flag may be stale, and a new item must not wait for slots.
      const worthIt = this.claims.size > 0 || refilling ? this.refillAt : 1;
      if (this.backlog ? available < worthIt : this.claims.size > 0) break;
      const wanted = Math.min(available, this.options.batchSize);
      this.reservedSlots += wanted;
      this.options.metrics.tick();
      const claim = this.claim(wanted).finally(() => {
        this.claims.delete(claim);
        this.reservedSlots -= wanted;
        this.afterClaim();
      });
      this.claims.add(claim);
      started += 1;
    }
    return started;
  }

  /** After a claim settles: more while a backlog remains, else one asked-for claim, else sleep. */
  private afterClaim(): void {
    if (this.state !== 'running') return;
    if (this.backlog || (this.claimRequested && this.claims.size === 0)) {
      if (this.fill(true) > 0) {
        // A claim that starts now sees everything a wake-up asked for.
        this.claimRequested = false;
        this.options.metrics.wakeup('drain');
      }
    } else if (this.claims.size === 0 && this.databaseReachable) {
      this.scheduleNextDue();
    }
  }

  /** One claim of up to `wanted` items, handed to the dispatcher; never rejects. */
  private async claim(wanted: number): Promise<void> {
    const { pools, workerId, leaseSeconds, metrics, logger } = this.options;
    const tracing = this.options.tracing ?? NO_TRACING;
    const claimSpan = tracing.startClaim(workerId, wanted);
    let items: ClaimedItem[];
    try {
      items = await claimOutboxBatch(pools.claims, {
        batchSize: wanted,
        workerId,
        leaseSeconds,
        railTypes: this.railTypes,
      });
    } catch (error) {
      tracing.endClaim(claimSpan, 0, error);
      this.backlog = false;
      this.setDatabaseReachable(false);
      logger.error(
        { event: 'claim_failed', err: { message: (error as Error).message } },
        'claiming failed; retrying on the next wake-up',
      );
      return;
    }
    tracing.endClaim(claimSpan, items.length);
    this.setDatabaseReachable(true);
    metrics.tick();
    const byRail = new Map<string, number>();
    for (const item of items) byRail.set(item.railType, (byRail.get(item.railType) ?? 0) + 1);
    for (const [rail, count] of byRail) metrics.claimed(rail, count);
    // A stop that began during the claim starts no new dispatch: it releases these leases.
    if (this.state !== 'running') {
      this.claimedWhileStopping.push(...items);
      return;
    }
    this.dispatcher.submit(items, claimSpan);
    this.backlog = items.length === wanted;
  }

  /** The queue looked empty: wake again when the earliest scheduled retry falls due. */
  private scheduleNextDue(): void {
    if (this.deferredNextDue !== undefined) return;
    const wait = this.nextDueLookedUpAt + NEXT_DUE_LOOKUP_INTERVAL_MS - Date.now();
    if (wait <= 0) {
      void this.lookUpNextDue();
      return;
    }
    this.deferredNextDue = setTimeout(() => {
      this.deferredNextDue = undefined;
      if (this.state === 'running') void this.lookUpNextDue();
    }, wait);
  }

  private async lookUpNextDue(): Promise<void> {
    this.nextDueLookedUpAt = Date.now();
    try {
      const next = await outboxNextAttemptAt(this.options.pools.background);
      if (next && next.getTime() > Date.now()) this.wakeup.scheduleAt(next);
    } catch (error) {
      this.setDatabaseReachable(false);
      this.options.logger.error(
        { event: 'claim_failed', err: { message: (error as Error).message } },
        'reading the next due time failed; retrying on the next wake-up',
      );
    }
  }

  private async release(items: { outboxId: string; leaseToken: string }[]): Promise<number> {
    if (items.length === 0) return 0;
    const released = await releaseOutboxLeases(
      this.options.pools.claims,
      this.options.workerId,
      items,
    ).catch((error: Error) => {
      this.options.logger.error(
        { event: 'release_failed', count: items.length, err: { message: error.message } },
        'could not release unstarted leases; they will expire and be repaired',
      );
      return [];
    });
    this.options.metrics.released(released.length);
    return released.length;
  }

  /**
   * Requeues expired leases in chunks of repairBatchSize, each its own short transaction
   * (so one chunk always fits the statement timeout), until a chunk comes back short or
   * MAX_REPAIR_CHUNKS_PER_RUN chunks have run; the next tick takes the rest.
   */
  private async repair(): Promise<void> {
    const { pools, workerId, repairBatchSize, metrics, logger } = this.options;
    let total = 0;
    for (let chunk = 0; chunk < MAX_REPAIR_CHUNKS_PER_RUN && this.state === 'running'; chunk += 1) {
      const repaired = await repairExpiredLeases(pools.background, {
        batchSize: repairBatchSize,
        workerId,
      });
      metrics.repaired(repaired.length);
      total += repaired.length;
      if (repaired.length < repairBatchSize) break;
    }
    if (total > 0) {
      logger.warn(
        { event: 'leases_repaired', count: total },
        'requeued items whose lease expired (a worker crashed or stalled)',
      );
      this.wake('drain');
    }
  }

  private async sampleQueue(): Promise<void> {
    // The fleet shares one sample per interval (0031): at most one worker counts the queue
    // (exactly while it is small, an estimate of bounded cost once it is large: 0043), the
    // others read the stored row. A little under the interval, so each worker's tick
    // sees a sample no older than one interval.
    const maxAgeMs = Math.floor(this.options.queueStatsIntervalMs * 0.9);
    const { background } = this.options.pools;
    const sample = await outboxQueueSample(background, maxAgeMs);
    const [pauses, railControls] = await Promise.all([
      activePauses(background),
      railOverview(background),
    ]);
    this.setDatabaseReachable(true);
    if (sample) {
      this.options.metrics.setQueueStats(sample.stats);
      this.options.metrics.setRailQueueStats(sample.byRail);
      this.options.metrics.setQueueSampleEstimated(sample.estimated);
    }
    this.options.metrics.setPauses(pauses);
    this.options.metrics.setRailControls(railControls);
  }

  /** A worker state change: logged once per transition, not once per failed query. */
  private setDatabaseReachable(reachable: boolean): void {
    if (this.databaseReachable === reachable) return;
    this.databaseReachable = reachable;
    if (reachable) {
      this.options.logger.info({ event: 'database_reachable' }, 'database reachable again');
    } else {
      this.options.logger.warn(
        { event: 'database_unreachable' },
        'database queries failing; not ready until one succeeds',
      );
    }
  }

  private backgroundError(task: string, error: unknown): void {
    this.setDatabaseReachable(false);
    this.options.logger.error(
      { event: `${task}_failed`, err: { message: (error as Error).message } },
      `${task} failed; will try again on its next run`,
    );
  }
}
