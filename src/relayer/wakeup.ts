import type { Logger } from 'pino';
import { describeConnectionFailure } from '../db/connection-failure.ts';
import { NotificationListener } from '../db/notification-listener.ts';
import { LogThrottle } from '../observability/log-throttle.ts';
import type { WakeupSource } from '../observability/metrics.ts';

export const OUTBOX_CHANNEL = 'outbox_pending';

export interface WakeupOptions {
  /** Connection for LISTEN; null in poll-only mode (transaction-pooling PgBouncer cannot LISTEN). */
  listenConnectionString: string | null;
  pollIntervalMs: number;
  logger: Logger;
  onWake: (source: WakeupSource) => void;
  onListenerState: (connected: boolean) => void;
}

/** At most one listener problem per this interval reaches the log; the rest are counted. */
export const LISTENER_LOG_INTERVAL_MS = 30_000;

/** Longest a timer may be set for; Node clamps larger delays to 1 ms. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Every reason the relayer has to look for work: a NOTIFY (wake-up only: any login may
 * NOTIFY, so the payload is never read and a notification can do nothing but cause one more
 * claim), the fallback poll, the earliest scheduled retry, and a listener reconnect
 * (notifications sent while it was down are lost, so poll at once).
 */
export class Wakeup {
  private listener: NotificationListener | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryAt: number | undefined;
  private connected = false;
  private readonly problemLog = new LogThrottle(LISTENER_LOG_INTERVAL_MS);

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
    const listener = this.listener;
    this.listener = undefined;
    this.setConnected(false);
    if (listener) await listener.stop();
  }

  private async listen(connectionString: string): Promise<void> {
    const { logger, onWake } = this.options;
    let started = false;
    const listener = new NotificationListener({
      connectionString,
      channel: OUTBOX_CHANNEL,
      applicationName: 'symphony-relay listener',
      onNotification: () => onWake('notify'),
      onConnectionState: (connected) => {
        this.setConnected(connected);
        // After a reconnect: notifications sent while it was down are lost, so poll at once.
        if (connected && started) {
          logger.info(
            { event: 'listener_reconnected' },
            'LISTEN connection restored; polling at once',
          );
          onWake('reconnect');
        }
      },
      onConnectionProblem: ({ event, message }) => {
        const suppressed = this.problemLog.take();
        if (suppressed === undefined) return;
        logger.warn(
          { event, err: { message }, suppressed },
          event === 'listener_lost'
            ? 'LISTEN connection lost; reconnecting (the poll timer still finds work meanwhile)'
            : 'LISTEN reconnect failed; trying again',
        );
      },
    });
    try {
      await listener.start();
    } catch (error) {
      throw new Error(
        `the LISTEN connection failed: ${describeConnectionFailure(error, connectionString)}. ` +
          'Behind a transaction-pooling PgBouncer set SYMPHONY_POLL_ONLY=true',
        { cause: error },
      );
    }
    started = true;
    this.listener = listener;
  }

  private setConnected(connected: boolean): void {
    if (this.connected === connected) return;
    this.connected = connected;
    this.options.onListenerState(connected);
  }
}
