import type pg from 'pg';

const PROBE_CHANNEL = 'test_probe';

/**
 * A plain pg client LISTENing on a channel, recording every notification in arrival order.
 * "Nothing arrived" is proved without sleeping: a probe NOTIFY committed later by another
 * connection is delivered after every notification committed before it, so once the probe
 * is seen, anything earlier would have been seen too.
 */
export class NotificationRecorder {
  readonly received: { channel: string; payload: string | undefined }[] = [];
  private probes = 0;
  private waiters: { predicate: () => boolean; resolve: () => void }[] = [];

  private constructor(private readonly listener: pg.Client) {
    listener.on('notification', (message) => {
      this.received.push({ channel: message.channel, payload: message.payload });
      this.waiters = this.waiters.filter((waiter) => {
        if (!waiter.predicate()) return true;
        waiter.resolve();
        return false;
      });
    });
  }

  static async listen(listener: pg.Client, channel: string): Promise<NotificationRecorder> {
    const recorder = new NotificationRecorder(listener);
    await listener.query(`LISTEN ${channel}`);
    await listener.query(`LISTEN ${PROBE_CHANNEL}`);
    return recorder;
  }

  on(channel: string): { channel: string; payload: string | undefined }[] {
    return this.received.filter((message) => message.channel === channel);
  }

  /** Commits a probe notification from `other` and waits until the listener has it. */
  async sync(other: pg.Client): Promise<void> {
    this.probes += 1;
    const marker = `probe-${this.probes}`;
    const seen = () =>
      this.received.some((m) => m.channel === PROBE_CHANNEL && m.payload === marker);
    const arrived = this.waitFor(seen);
    await other.query('SELECT pg_notify($1, $2)', [PROBE_CHANNEL, marker]);
    await arrived;
  }

  /** Resolves once a notification on `channel` has arrived. */
  waitFor(predicate: () => boolean): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ predicate, resolve }));
  }

  clear(): void {
    this.received.length = 0;
  }
}
