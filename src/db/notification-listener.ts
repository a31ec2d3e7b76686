import pg from 'pg';
import { CONNECT_TIMEOUT_MS } from './pool.ts';

export interface NotificationListenerOptions {
  connectionString: string;
  /** A fixed identifier of ours, never caller input. */
  channel: string;
  applicationName: string;
  /** Any notification on the channel; its payload is never read (anyone may NOTIFY). */
  onNotification: () => void;
  /** false when the connection is lost, true when a reconnect has LISTENed again. */
  onConnectionState: (connected: boolean) => void;
  /** A lost connection or a failed reconnect; the message is the driver's, never a payload. */
  onConnectionProblem: (problem: {
    event: 'listener_lost' | 'listener_reconnect_failed';
    message: string;
  }) => void;
  /** How often an idle connection is checked with a round trip (a half-open TCP connection never errors). */
  healthCheckIntervalMs?: number;
  /** Delay before reconnect attempt n (0-based). */
  retryDelayMs?: (attempt: number) => number;
}

const DEFAULT_HEALTH_CHECK_MS = 10_000;
const defaultRetryDelay = (attempt: number) => Math.min(5_000, 250 * 2 ** attempt);

/**
 * LISTEN on one channel over a dedicated connection, reconnecting for ever.
 *
 * Written on plain `pg` rather than pg-listen: pg-listen JSON-parses every payload and turns a
 * payload it cannot parse into an 'error' event, so any login could NOTIFY garbage and make a
 * relayer look disconnected. Here a notification is only a wake-up: the payload is never
 * parsed, logged or passed on. The connection counts as down only when the driver says so
 * (an 'error' or 'end' on the client) or a health-check round trip fails.
 */
export class NotificationListener {
  private client: pg.Client | undefined;
  private stopped = false;
  private healthTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private checking = false;

  constructor(private readonly options: NotificationListenerOptions) {}

  /** The first connection: fails (rejects) instead of retrying, so a bad setting stops start. */
  async start(): Promise<void> {
    this.client = await this.connect();
    this.options.onConnectionState(true);
    const interval = this.options.healthCheckIntervalMs ?? DEFAULT_HEALTH_CHECK_MS;
    this.healthTimer = setInterval(() => void this.checkHealth(), interval);
    this.healthTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.healthTimer);
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    if (client) await client.end().catch(() => undefined);
  }

  private async connect(): Promise<pg.Client> {
    const { connectionString, applicationName, channel, onNotification } = this.options;
    const client = new pg.Client({
      connectionString,
      application_name: applicationName,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      keepAlive: true,
    });
    // Registered before connect: an 'error' without a listener would crash the process.
    client.on('error', (error) => this.lost(client, error.message));
    client.on('end', () => this.lost(client, 'the connection ended'));
    client.on('notification', (message) => {
      if (message.channel === channel) onNotification();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
    } catch (error) {
      client.removeAllListeners('end');
      await client.end().catch(() => undefined);
      throw error;
    }
    return client;
  }

  /** A round trip on the LISTEN connection; a failure is a lost connection. */
  private async checkHealth(): Promise<void> {
    const client = this.client;
    if (!client || this.checking) return;
    this.checking = true;
    try {
      await withTimeout(client.query('SELECT 1'), CONNECT_TIMEOUT_MS);
    } catch (error) {
      this.lost(client, (error as Error).message);
    } finally {
      this.checking = false;
    }
  }

  private lost(client: pg.Client, message: string): void {
    if (this.stopped || this.client !== client) return;
    this.client = undefined;
    client.end().catch(() => undefined);
    this.options.onConnectionState(false);
    this.options.onConnectionProblem({ event: 'listener_lost', message });
    this.scheduleReconnect(0);
  }

  private scheduleReconnect(attempt: number): void {
    if (this.stopped) return;
    const delay = (this.options.retryDelayMs ?? defaultRetryDelay)(attempt);
    this.retryTimer = setTimeout(() => void this.reconnect(attempt), delay);
  }

  private async reconnect(attempt: number): Promise<void> {
    let client: pg.Client;
    try {
      client = await this.connect();
    } catch (error) {
      this.options.onConnectionProblem({
        event: 'listener_reconnect_failed',
        message: (error as Error).message,
      });
      this.scheduleReconnect(attempt + 1);
      return;
    }
    if (this.stopped) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.options.onConnectionState(true);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
