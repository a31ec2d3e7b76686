import pg from 'pg';
import pgListen, { type Subscriber } from 'pg-listen';
import type { Logger } from 'pino';
import { describeConnectionFailure } from '../db/connection-failure.ts';
import { CONNECT_TIMEOUT_MS } from '../db/pool.ts';
import type { WakeupSource } from '../observability/metrics.ts';

// pg-listen is CommonJS with an __esModule default export.
const createSubscriber = pgListen.default;

export const OUTBOX_CHANNEL = 'outbox_pending';

export interface WakeupOptions {
  /** Connection for LISTEN; null in poll-only mode (transaction-pooling PgBouncer cannot LISTEN). */
  listenConnectionString: string | null;
  pollIntervalMs: number;
  logger: Logger;
  onWake: (source: WakeupSource) => void;
  onListenerState: (connected: boolean) => void;
}

/** Longest a timer may be set for; Node clamps larger delays to 1 ms. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Every reason the relayer has to look for work: a NOTIFY (wake-up only, its payload is
 * never trusted), the fallback poll, the earliest scheduled retry, and a listener reconnect
 * (notifications sent while it was down are lost, so poll at once).
 */
export class Wakeup {
  private subscriber: Subscriber | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryAt: number | undefined;
  private connected = false;

  constructor(private readonly options: WakeupOptions) {}

  get listenerConnected(): boolean {
    return this.connected;
  }

  get pollOnly(): boolean {
    return this.options.listenConnectionString === null;
  }

  async start(): Promise<void> {
    if (this.options.listenConnectionString !== null)
      await this.listen(this.options.listenConnectionString);
    this.pollTimer = setInterval(() => this.options.onWake('poll'), this.options.pollIntervalMs);
  }

  /** Wake at `when` unless an earlier wake is already scheduled. */
  scheduleAt(when: Date): void {
    const at = when.getTime();
    if (this.retryAt !== undefined && this.retryAt <= at) return;
    clearTimeout(this.retryTimer);
    this.retryAt = at;
    const delay = Math.min(Math.max(0, at - Date.now()), MAX_TIMER_MS);
    this.retryTimer = setTimeout(() => {
      this.retryAt = undefined;
      this.options.onWake('scheduled_retry');
    }, delay);
  }

  async stop(): Promise<void> {
    clearInterval(this.pollTimer);
    clearTimeout(this.retryTimer);
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    this.setConnected(false);
    if (subscriber) await subscriber.close().catch(() => undefined);
  }

  /**
   * One plain LISTEN on a throw-away connection first: pg-listen retries a failed first
   * connect in the background for ever, so a refused LISTEN connection would leave start
   * hanging instead of failing with a reason.
   */
  private async probeListen(connectionString: string): Promise<void> {
    const probe = new pg.Client({
      connectionString,
      application_name: 'symphony-relay listener check',
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      await probe.query(`LISTEN ${OUTBOX_CHANNEL}`);
    } catch (error) {
      throw new Error(
        `the LISTEN connection failed: ${describeConnectionFailure(error, connectionString)}. ` +
          'Behind a transaction-pooling PgBouncer set SYMPHONY_POLL_ONLY=true',
        { cause: error },
      );
    } finally {
      await probe.end().catch(() => undefined);
    }
  }

  private async listen(connectionString: string): Promise<void> {
    const { logger, onWake } = this.options;
    await this.probeListen(connectionString);
    const subscriber = createSubscriber(
      { connectionString, application_name: 'symphony-relay listener' },
      {
        paranoidChecking: 10_000,
        retryInterval: (attempt) => Math.min(5_000, 250 * 2 ** attempt),
        retryLimit: Infinity,
        // Never give up: while the listener is down the poll timer still finds the work.
        retryTimeout: Number.MAX_SAFE_INTEGER,
      },
    );
    subscriber.notifications.on(OUTBOX_CHANNEL, () => onWake('notify'));
    subscriber.events.on('reconnect', (attempt) => {
      this.setConnected(false);
      if (attempt === 1)
        logger.warn({ event: 'listener_disconnected' }, 'LISTEN connection lost; reconnecting');
    });
    subscriber.events.on('error', (error) => {
      this.setConnected(false);
      logger.error(
        { event: 'listener_error', err: { message: error.message } },
        'LISTEN connection error',
      );
    });
    try {
      await subscriber.connect();
      await subscriber.listenTo(OUTBOX_CHANNEL);
    } catch (error) {
      await subscriber.close().catch(() => undefined);
      throw new Error(
        `the LISTEN connection failed: ${describeConnectionFailure(error, connectionString)}`,
        { cause: error },
      );
    }
    // Registered after the first connect, so 'connected' from here on means a reconnect
    // (with its LISTEN re-issued) succeeded.
    subscriber.events.on('connected', () => {
      this.setConnected(true);
      logger.info({ event: 'listener_reconnected' }, 'LISTEN connection restored; polling at once');
      onWake('reconnect');
    });
    this.subscriber = subscriber;
    this.setConnected(true);
  }

  private setConnected(connected: boolean): void {
    if (this.connected === connected) return;
    this.connected = connected;
    this.options.onListenerState(connected);
  }
}
