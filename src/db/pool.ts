import pg from 'pg';

// int8 (BIGINT) values such as sequence ids stay strings; counts are converted where read.
export type Queryable = Pick<pg.Pool | pg.PoolClient | pg.Client, 'query'>;

export interface PoolOptions {
  connectionString: string;
  applicationName: string;
  max: number;
  /**
   * Keep every connection once opened instead of closing it after 30 s idle: a worker's
   * next burst then never waits for a new connection (20-35 ms with SCRAM on loopback).
   */
  keepOpen?: boolean;
}

/** A connection attempt that gets no answer fails after this long instead of hanging. */
export const CONNECT_TIMEOUT_MS = 10_000;

/**
 * A pool that sends no startup parameter beyond application_name, so it works directly and
 * through PgBouncer alike. The runtime role and the statement timeout are role-level defaults
 * of the login (`roles create-login`); callers check who they act as (boot checks,
 * withDatabaseSession) and fail closed otherwise.
 */
export function createPool(options: PoolOptions): pg.Pool {
  return new pg.Pool({
    connectionString: options.connectionString,
    application_name: options.applicationName,
    max: options.max,
    min: options.keepOpen ? options.max : 0,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
  });
}

/**
 * Opens `count` of the pool's connections now and runs `prepare` once on each, so the first
 * burst of work finds them open and warm. Rejects when a connection cannot be opened; a
 * connection whose `prepare` fails, or that the server cuts meanwhile, is closed (the pool
 * opens a new one on demand).
 */
export async function openConnections(
  pool: pg.Pool,
  count: number,
  prepare: (client: pg.PoolClient) => Promise<unknown>,
): Promise<void> {
  // All `count` stay checked out until every one is open, or the pool would hand out the
  // same idle connection again.
  const clients = await Promise.allSettled(
    Array.from({ length: count }, () => pool.connect().then(guardWhileCheckedOut)),
  );
  await Promise.all(
    clients.map(async (opened) => {
      if (opened.status === 'rejected') return;
      const held = opened.value;
      try {
        await prepare(held.client);
        held.release();
      } catch (error) {
        held.release(error instanceof Error ? error : new Error(String(error)));
      }
    }),
  );
  const failed = clients.find((opened) => opened.status === 'rejected');
  if (failed) throw failed.reason;
}

/**
 * A checked-out client has no 'error' listener of the pool's (pg-pool removes it at
 * checkout), so a connection the server cuts while no query runs on it (a restart, an
 * administrator's pg_terminate_backend) would be an unhandled 'error' event: the process
 * crashed with a stack trace while starting (chaos run, seed 5). Held until release; a cut
 * client is released with its error, so the pool drops it instead of reusing it.
 */
function guardWhileCheckedOut(client: pg.PoolClient) {
  let cut: Error | undefined;
  const onError = (error: Error) => {
    cut ??= error;
  };
  client.on('error', onError);
  return {
    client,
    release(error?: Error) {
      client.removeListener('error', onError);
      client.release(error ?? cut);
    },
  };
}

interface TransitionLogger {
  warn(fields: object, message: string): void;
  info(fields: object, message: string): void;
}

/**
 * A pool emits 'error' for every idle connection the server cuts (a restart cuts them all):
 * logged once when connections start failing, and once when a new one succeeds again.
 * Without a listener the event would crash the process.
 */
export function logPoolTransitions(
  pools: readonly pg.Pool[],
  logger: TransitionLogger,
  what: string,
): void {
  // One state for all the pools of one owner: a restart cuts them all, and that is one event.
  let failing = false;
  for (const pool of pools) {
    pool.on('error', (error: Error) => {
      if (failing) return;
      failing = true;
      logger.warn(
        { event: 'pool_error', err: { message: error.message } },
        `${what}: idle database connections were cut; reconnecting on demand`,
      );
    });
    pool.on('connect', () => {
      if (!failing) return;
      failing = false;
      logger.info({ event: 'pool_reconnected' }, `${what}: database connections re-established`);
    });
  }
}

/** The counters of several pools added up, as one pool's would read. */
export function combinedPoolStats(pools: readonly pg.Pool[]) {
  let totalCount = 0;
  let idleCount = 0;
  let waitingCount = 0;
  for (const pool of pools) {
    totalCount += pool.totalCount;
    idleCount += pool.idleCount;
    waitingCount += pool.waitingCount;
  }
  return { totalCount, idleCount, waitingCount };
}
