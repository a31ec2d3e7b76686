import { packageVersion } from '../build-info.ts';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { PAUSE_SCOPES, type Pause, type RailOverview } from '../db/controls.ts';
import type { QueueStats, RailQueueStats } from '../db/outbox.ts';

/** The label every rail type that this worker has no adapter for is counted under. */
export const OTHER_RAIL = 'other';

/** How a dispatch ended, as recorded through `complete_outbox_attempt`. */
export const DISPATCH_OUTCOMES = ['dispatched', 'retryable', 'failed'] as const;
export type DispatchOutcome = (typeof DISPATCH_OUTCOMES)[number];

/** Why the worker loop woke up and tried to claim. */
export const WAKEUP_SOURCES = [
  'notify',
  'poll',
  'scheduled_retry',
  'drain',
  'reconnect',
  'startup',
] as const;
export type WakeupSource = (typeof WAKEUP_SOURCES)[number];

/** The counters `pg.Pool` exposes; a getter is read at scrape time, so the values are never stale. */
export interface PoolStats {
  totalCount: number;
  idleCount: number;
  waitingCount: number;
}

/** What the dispatch slot gauges report. */
export interface SlotCounts {
  inFlight: number;
  free: number;
}

export interface RelayerMetricsOptions {
  /** Reported as `symphony_relay_build_info{version}`; defaults to package.json's version. */
  version?: string;
  /** Read on every scrape; return undefined while no pool exists (e.g. before start). */
  poolStats?: () => PoolStats | undefined;
  /** Milliseconds since the epoch; injectable so tests control time instead of sleeping. */
  clock?: () => number;
}

const PREFIX = 'symphony_relay_';

/** Error codes of the relayer and its built-in rails; an adapter declares its own (errorCodes). */
export const BUILT_IN_ERROR_CODES = [
  'TIMEOUT',
  'ABORTED',
  'NETWORK_ERROR',
  'UNKNOWN_RAIL',
  'INVALID_OUTCOME',
  'INVALID_REQUEST',
  'SANDBOX_RETRYABLE',
  'SANDBOX_REJECTED',
] as const;
/** HTTP_<status> from the http rail: at most 500 values, so always its own label. */
const HTTP_STATUS_CODE = /^HTTP_[1-5]\d\d$/;
/** Bounds what an adapter may declare, so no adapter can blow up the series count. */
const MAX_DECLARED_CODES = 100;
const DECLARED_CODE = /^[A-Za-z0-9_.:-]{1,64}$/;
export const OTHER_ERROR_CODE = 'other';
const BREAKER_GAUGE_VALUES = { closed: 0, half_open: 1, open: 2 } as const;

// Rail calls are network round trips with a dispatch timeout of seconds: 5 ms up to a minute.
const DISPATCH_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

// End-to-end latency includes retries with backoff, so the tail reaches an hour.
const ENQUEUE_TO_DISPATCH_BUCKETS = [
  0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
];

/**
 * Every Prometheus metric the relayer exports, on a registry of its own so that two
 * relayers in one process (tests) never share or double-register series.
 * The metric names are an interface: deploy/prometheus/alerts.yml and the README use them.
 */
export class RelayerMetrics {
  readonly registry: Registry;
  /** The build's version, as in symphony_relay_build_info. */
  readonly version: string;

  private readonly clock: () => number;
  private lastTickMs: number | undefined;

  private readonly itemsClaimed: Counter<'rail'>;
  private readonly itemsCompleted: Counter<'rail' | 'outcome'>;
  private readonly leasesLost: Counter<'rail'>;
  private readonly attemptErrors: Counter<'rail' | 'outcome' | 'error_code'>;
  private readonly retryCeilingReached: Counter<'rail'>;
  /** rail → the error codes its adapter declared (label values allowed besides the built-ins). */
  private readonly declaredErrorCodes = new Map<string, ReadonlySet<string>>();
  private readonly dispatchDuration: Histogram<'rail' | 'outcome'>;
  private readonly enqueueToDispatch: Histogram<'rail'>;
  /** Read at scrape time while a dispatcher runs; otherwise the last setSlots values. */
  private slotCounts: () => SlotCounts = () => ({ inFlight: 0, free: 0 });
  private readonly wakeups: Counter<'source'>;
  private readonly leasesRepaired: Counter;
  private readonly leasesReleased: Counter;
  private readonly queuePending: Gauge;
  private readonly queueDue: Gauge;
  private readonly queueLeased: Gauge;
  private readonly queueExpiredLeases: Gauge;
  private readonly queueOldestDueAge: Gauge;
  private readonly queueStatsTimestamp: Gauge;
  private readonly queueSampleEstimated: Gauge;
  private readonly railQueueDue: Gauge<'rail'>;
  private readonly railQueueOldestDueAge: Gauge<'rail'>;
  private readonly dispatchPaused: Gauge<'scope'>;
  private readonly railBreakerState: Gauge<'rail'>;
  /** Rail labels are bounded: configured rails by name, everything else as `other`. */
  private configuredRails: ReadonlySet<string> = new Set();
  private readonly listenerConnected: Gauge;
  private readonly notificationsReceived: Counter;
  private readonly workerUp: Gauge;
  private readonly loopLastTick: Gauge;

  constructor(options: RelayerMetricsOptions = {}) {
    this.clock = options.clock ?? Date.now;
    this.version = options.version ?? packageVersion();
    const registry = new Registry();
    this.registry = registry;
    collectDefaultMetrics({ register: registry });
    const registers = [registry];

    this.itemsClaimed = new Counter({
      name: `${PREFIX}items_claimed_total`,
      help: 'Outbox items this worker claimed (leased) for dispatch.',
      labelNames: ['rail'],
      registers,
    });
    this.itemsCompleted = new Counter({
      name: `${PREFIX}items_completed_total`,
      help: 'Dispatch attempts whose outcome was recorded, by outcome (dispatched, retryable, failed).',
      labelNames: ['rail', 'outcome'],
      registers,
    });
    this.leasesLost = new Counter({
      name: `${PREFIX}lease_lost_total`,
      help: 'Completions refused with P7002 LEASE_LOST: another worker owns the item now.',
      labelNames: ['rail'],
      registers,
    });
    this.attemptErrors = new Counter({
      name: `${PREFIX}attempt_errors_total`,
      help: 'Recorded attempts that did not dispatch, by outcome (retryable, failed) and error code (codes the relayer, its rails or the adapter declare; anything else is "other").',
      labelNames: ['rail', 'outcome', 'error_code'],
      registers,
    });
    this.retryCeilingReached = new Counter({
      name: `${PREFIX}retry_ceiling_reached_total`,
      help: 'Items the database turned from RETRYABLE into FAILED because they reached the retry ceiling.',
      labelNames: ['rail'],
      registers,
    });
    this.dispatchDuration = new Histogram({
      name: `${PREFIX}dispatch_duration_seconds`,
      help: 'Time spent in the rail adapter for one dispatch attempt.',
      labelNames: ['rail', 'outcome'],
      buckets: DISPATCH_DURATION_BUCKETS,
      registers,
    });
    this.enqueueToDispatch = new Histogram({
      name: `${PREFIX}enqueue_to_dispatch_seconds`,
      help: "Time from an item's created_at to its successful dispatch, retries included.",
      labelNames: ['rail'],
      buckets: ENQUEUE_TO_DISPATCH_BUCKETS,
      registers,
    });
    // Read at scrape time: the slots change twice per item, and setting two gauges on every
    // change was a cost of the hot path nobody looks at between scrapes (issue 9).
    const slots = () => this.slotCounts();
    new Gauge({
      name: `${PREFIX}dispatch_in_flight`,
      help: 'Dispatches currently running in this worker.',
      registers,
      collect() {
        this.set(slots().inFlight);
      },
    });
    new Gauge({
      name: `${PREFIX}dispatch_slots_free`,
      help: 'Dispatch slots free in this worker; the claimer never leases more than this.',
      registers,
      collect() {
        this.set(slots().free);
      },
    });
    this.wakeups = new Counter({
      name: `${PREFIX}wakeups_total`,
      help: 'Worker loop wakeups, by source (notify, poll, scheduled_retry, drain, reconnect, startup).',
      labelNames: ['source'],
      registers,
    });
    this.leasesRepaired = new Counter({
      name: `${PREFIX}leases_repaired_total`,
      help: 'Expired leases this worker requeued as ZOMBIE_REQUEUE (items held by crashed or stalled workers).',
      registers,
    });
    this.leasesReleased = new Counter({
      name: `${PREFIX}leases_released_total`,
      help: 'Leases this worker released undispatched during graceful shutdown.',
      registers,
    });
    this.queuePending = new Gauge({
      name: `${PREFIX}queue_pending`,
      help: 'Items in payment_outbox_pending at the last queue sample.',
      registers,
    });
    this.queueDue = new Gauge({
      name: `${PREFIX}queue_due`,
      help: 'Pending items whose next_attempt_at has passed, at the last queue sample.',
      registers,
    });
    this.queueLeased = new Gauge({
      name: `${PREFIX}queue_leased`,
      help: 'Pending items currently leased by some worker, at the last sample.',
      registers,
    });
    this.queueExpiredLeases = new Gauge({
      name: `${PREFIX}queue_expired_leases`,
      help: 'Leases past their expiry awaiting repair (crashed or stalled workers), at the last sample.',
      registers,
    });
    this.queueOldestDueAge = new Gauge({
      name: `${PREFIX}queue_oldest_due_age_seconds`,
      help: 'How long the oldest due item has been waiting (0 when nothing is due), at the last sample.',
      registers,
    });
    this.queueStatsTimestamp = new Gauge({
      name: `${PREFIX}queue_stats_timestamp_seconds`,
      help: 'Unix time of the last queue sample; a stale value means the queue gauges are stale too.',
      registers,
    });
    this.queueSampleEstimated = new Gauge({
      name: `${PREFIX}queue_sample_estimated`,
      help: '1 when the last queue sample estimated the larger counts (a queue past the sample bound, 0043), 0 when every count is exact.',
      registers,
    });
    this.railQueueDue = new Gauge({
      name: `${PREFIX}queue_rail_due`,
      help: 'Due items per rail type at the last queue sample; rail types this worker does not serve are summed under rail="other".',
      labelNames: ['rail'],
      registers,
    });
    this.railQueueOldestDueAge = new Gauge({
      name: `${PREFIX}queue_rail_oldest_due_age_seconds`,
      help: 'How long the oldest due item of each rail type has waited (0 when none); rail types this worker does not serve are under rail="other" (their maximum).',
      labelNames: ['rail'],
      registers,
    });
    this.dispatchPaused = new Gauge({
      name: `${PREFIX}dispatch_paused`,
      help: 'Active kill switches (symphony-relay pause) per scope: all, rail, participant, at the last queue sample. Items they cover are due but never claimed.',
      labelNames: ['scope'],
      registers,
    });
    for (const scope of PAUSE_SCOPES) this.dispatchPaused.set({ scope }, 0);
    this.railBreakerState = new Gauge({
      name: `${PREFIX}rail_breaker_state`,
      help: 'Circuit breaker of each rail with a breaker (symphony-relay rail set): 0 closed, 1 half-open (one probe may go), 2 open (nothing is claimed), at the last queue sample.',
      labelNames: ['rail'],
      registers,
    });
    this.listenerConnected = new Gauge({
      name: `${PREFIX}listener_connected`,
      help: '1 while the LISTEN outbox_pending connection is up, else 0 (the worker falls back to polling).',
      registers,
    });
    this.notificationsReceived = new Counter({
      name: `${PREFIX}notifications_received_total`,
      help: 'NOTIFY outbox_pending messages received; each is only a wake-up (any login may send one, the payload is never read).',
      registers,
    });

    const poolStats = options.poolStats;
    new Gauge({
      name: `${PREFIX}db_pool_connections`,
      help: 'Database pool connections by state: total (open), idle, busy (checked out).',
      labelNames: ['state'],
      registers,
      collect() {
        const stats = poolStats?.();
        if (!stats) return;
        this.set({ state: 'total' }, stats.totalCount);
        this.set({ state: 'idle' }, stats.idleCount);
        this.set({ state: 'busy' }, Math.max(0, stats.totalCount - stats.idleCount));
      },
    });
    new Gauge({
      name: `${PREFIX}db_pool_waiting_requests`,
      help: 'Queries waiting for a free pool connection (requests, not connections); above 0 for long means the pool is too small or the database slow.',
      registers,
      collect() {
        const stats = poolStats?.();
        if (stats) this.set(stats.waitingCount);
      },
    });

    this.workerUp = new Gauge({
      name: `${PREFIX}worker_up`,
      help: '1 while the worker loop is running (between start and shutdown), else 0.',
      registers,
    });
    this.loopLastTick = new Gauge({
      name: `${PREFIX}loop_last_tick_timestamp_seconds`,
      help: 'Unix time the worker loop last completed an iteration; /healthz fails when it is stale.',
      registers,
    });
    new Gauge({
      name: `${PREFIX}build_info`,
      help: 'Always 1; the version label says which build is running.',
      labelNames: ['version'],
      registers,
    }).set({ version: this.version }, 1);
  }

  /**
   * Exports zero-valued series for every configured rail and wake-up source, so rate()
   * queries and ratio alerts have a baseline before the first event instead of no series.
   */
  initialiseSeries(rails: readonly string[]): void {
    this.configuredRails = new Set(rails);
    for (const rail of [...rails, OTHER_RAIL]) {
      this.railQueueDue.set({ rail }, 0);
      this.railQueueOldestDueAge.set({ rail }, 0);
    }
    for (const rail of rails) {
      this.itemsClaimed.inc({ rail }, 0);
      this.leasesLost.inc({ rail }, 0);
      this.retryCeilingReached.inc({ rail }, 0);
      for (const outcome of DISPATCH_OUTCOMES) this.itemsCompleted.inc({ rail, outcome }, 0);
    }
    for (const source of WAKEUP_SOURCES) this.wakeups.inc({ source }, 0);
  }

  /** A producer chooses rail_type: only configured rails become label values. */
  railLabel(railType: string): string {
    return this.configuredRails.has(railType) ? railType : OTHER_RAIL;
  }

  claimed(rail: string, count: number): void {
    if (count > 0) this.itemsClaimed.inc({ rail: this.railLabel(rail) }, count);
  }

  /**
   * One recorded outcome. The enqueue-to-dispatch latency is observed for `dispatched` only:
   * it measures how long a payment took to reach its rail, and observing it on every retry
   * would count one payment several times.
   */
  completed(
    rail: string,
    outcome: DispatchOutcome,
    dispatchSeconds: number,
    enqueueToDispatchSeconds?: number,
  ): void {
    const label = this.railLabel(rail);
    this.itemsCompleted.inc({ rail: label, outcome });
    this.dispatchDuration.observe({ rail: label, outcome }, dispatchSeconds);
    if (outcome === 'dispatched' && enqueueToDispatchSeconds !== undefined) {
      this.enqueueToDispatch.observe({ rail: label }, Math.max(0, enqueueToDispatchSeconds));
    }
  }

  /**
   * Lets a rail's own error codes be label values (bounded: up to 100 codes of 1-64 letters,
   * digits, "_", ".", ":" or "-"; the rest of an oversized or odd list is ignored).
   */
  declareErrorCodes(rail: string, codes: readonly string[] | undefined): void {
    const valid = (codes ?? []).filter(
      (code) => typeof code === 'string' && DECLARED_CODE.test(code),
    );
    this.declaredErrorCodes.set(rail, new Set(valid.slice(0, MAX_DECLARED_CODES)));
  }

  /** The label value for an error code: the code when it is known, else "other". */
  errorCodeLabel(rail: string, errorCode: string): string {
    if ((BUILT_IN_ERROR_CODES as readonly string[]).includes(errorCode)) return errorCode;
    if (HTTP_STATUS_CODE.test(errorCode)) return errorCode;
    return this.declaredErrorCodes.get(rail)?.has(errorCode) ? errorCode : OTHER_ERROR_CODE;
  }

  /** A recorded attempt that did not dispatch; `ceilingReached` when the database turned it FAILED. */
  attemptFailed(
    rail: string,
    outcome: 'retryable' | 'failed',
    errorCode: string,
    ceilingReached = false,
  ): void {
    const label = this.railLabel(rail);
    this.attemptErrors.inc({
      rail: label,
      outcome,
      error_code: this.errorCodeLabel(rail, errorCode),
    });
    if (ceilingReached) this.retryCeilingReached.inc({ rail: label });
  }

  /** A completion refused with P7002; not counted as completed, since nothing was recorded. */
  leaseLost(rail: string): void {
    this.leasesLost.inc({ rail: this.railLabel(rail) });
  }

  wakeup(source: WakeupSource): void {
    this.wakeups.inc({ source });
  }

  notificationReceived(): void {
    this.notificationsReceived.inc();
  }

  /** Fixed slot counts (a worker not running: all free at start, none after stop). */
  setSlots(inFlight: number, free: number): void {
    this.slotCounts = () => ({ inFlight, free });
  }

  /** The slot gauges read `counts` on every scrape from now on. */
  readSlotsFrom(counts: () => SlotCounts): void {
    this.slotCounts = counts;
  }

  repaired(count: number): void {
    if (count > 0) this.leasesRepaired.inc(count);
  }

  released(count: number): void {
    if (count > 0) this.leasesReleased.inc(count);
  }

  setQueueStats(stats: QueueStats): void {
    this.queuePending.set(stats.pending);
    this.queueDue.set(stats.due);
    this.queueLeased.set(stats.leased);
    this.queueExpiredLeases.set(stats.expiredLeases);
    this.queueOldestDueAge.set(stats.oldestDueAgeSeconds ?? 0);
    this.queueStatsTimestamp.set(this.clock() / 1000);
  }

  setQueueSampleEstimated(estimated: boolean): void {
    this.queueSampleEstimated.set(estimated ? 1 : 0);
  }

  /**
   * Per-rail depth. A rail type no worker serves stays queued, never FAILED: it shows here
   * under `other` on every worker, which the RailDueItemsUnserved alert watches.
   */
  setRailQueueStats(rails: readonly RailQueueStats[]): void {
    const due = new Map<string, number>();
    const oldest = new Map<string, number>();
    for (const label of [...this.configuredRails, OTHER_RAIL]) {
      due.set(label, 0);
      oldest.set(label, 0);
    }
    for (const rail of rails) {
      const label = this.railLabel(rail.railType);
      due.set(label, (due.get(label) ?? 0) + rail.due);
      oldest.set(label, Math.max(oldest.get(label) ?? 0, rail.oldestDueAgeSeconds ?? 0));
    }
    for (const [rail, value] of due) this.railQueueDue.set({ rail }, value);
    for (const [rail, value] of oldest) this.railQueueOldestDueAge.set({ rail }, value);
  }

  /** The fleet's active pauses (one shared table): how many per scope. */
  setPauses(pauses: readonly Pause[]): void {
    for (const scope of PAUSE_SCOPES) {
      this.dispatchPaused.set({ scope }, pauses.filter((pause) => pause.scope === scope).length);
    }
  }

  /** Breaker state of the rails that have one (fleet-wide, from the database). */
  setRailControls(rails: readonly RailOverview[]): void {
    const states = new Map<string, number>();
    for (const rail of rails) {
      if (rail.breakerThreshold === null) continue;
      const label = this.railLabel(rail.railType);
      const value = BREAKER_GAUGE_VALUES[rail.breakerState];
      states.set(label, Math.max(states.get(label) ?? 0, value));
    }
    this.railBreakerState.reset();
    for (const [rail, value] of states) this.railBreakerState.set({ rail }, value);
  }

  setListenerConnected(connected: boolean): void {
    this.listenerConnected.set(connected ? 1 : 0);
  }

  setWorkerUp(up: boolean): void {
    this.workerUp.set(up ? 1 : 0);
  }

  /** Called once per worker loop iteration; liveness is judged from it. */
  tick(): void {
    this.lastTickMs = this.clock();
    this.loopLastTick.set(this.lastTickMs / 1000);
  }

  /** Milliseconds since the epoch of the last tick, or undefined before the first. */
  get lastTickAt(): number | undefined {
    return this.lastTickMs;
  }

  now(): number {
    return this.clock();
  }

  /** The exposition text Prometheus scrapes. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
