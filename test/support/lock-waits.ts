import type pg from 'pg';
import type { Queryable } from '../../src/db/pool.ts';
import { waitUntil } from './processes.ts';

/** The server process id behind a client, to watch it from another connection. */
export async function backendPid(client: pg.ClientBase): Promise<number> {
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const pid = rows[0]?.pid;
  if (pid === undefined) throw new Error('pg_backend_pid() returned no row');
  return pid;
}

/**
 * Waits until backend `pid` is blocked on a heavyweight lock (a row or advisory lock held
 * by another transaction), so a race can be staged in a known order instead of by timing.
 */
export async function waitUntilBlockedOnLock(observer: Queryable, pid: number): Promise<void> {
  await waitUntil(
    async () => {
      const { rows } = await observer.query(
        "SELECT 1 FROM pg_catalog.pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
        [pid],
      );
      return rows.length > 0 ? true : undefined;
    },
    { description: `backend ${pid} waiting on a lock`, attempts: 400, intervalMs: 25 },
  );
}
