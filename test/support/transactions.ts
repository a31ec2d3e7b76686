import type pg from 'pg';
import type { Queryable } from '../../src/db/pool.ts';
import { backendPid } from './lock-waits.ts';
import { waitUntil } from './processes.ts';

/**
 * Runs `work` inside a transaction that is always rolled back, so a proof can reach a
 * state (or a failure) without leaving it behind for the next test, and without
 * committing anything other test files could see.
 */
export async function rolledBack<T>(
  client: pg.ClientBase,
  work: (client: pg.ClientBase) => Promise<T>,
): Promise<T> {
  await client.query('BEGIN');
  try {
    return await work(client);
  } finally {
    await client.query('ROLLBACK');
  }
}

/** `rolledBack` on a connection borrowed from `pool`. */
export async function rolledBackOn<T>(
  pool: pg.Pool,
  work: (client: pg.ClientBase) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  try {
    return await rolledBack(client, work);
  } finally {
    client.release();
  }
}

export type Outcome = { ok: true } | { ok: false; error: Error };

/**
 * Runs `sql` on every client in a transaction of its own, with all of them overlapping for
 * real: every transaction has begun before any statement is sent, and none commits until
 * each of the others has either finished its statement or is blocked on a lock (watched in
 * pg_stat_activity by `observer`). Finished ones then commit (or roll back on error), which
 * lets the blocked ones go on; repeated until all are done. Returns each client's outcome.
 */
export async function inOverlappingTransactions(
  clients: readonly pg.Client[],
  sql: string,
  observer: Queryable,
): Promise<Outcome[]> {
  const pids = await Promise.all(clients.map((client) => backendPid(client)));
  await Promise.all(clients.map((client) => client.query('BEGIN')));
  const outcomes: (Outcome | undefined)[] = clients.map(() => undefined);
  const ended = clients.map(() => false);
  const runs = clients.map((client, i) =>
    client.query(sql).then(
      () => (outcomes[i] = { ok: true }),
      (error: Error) => (outcomes[i] = { ok: false, error }),
    ),
  );
  while (ended.includes(false)) {
    await waitUntil(
      async () => {
        const open = pids.filter((_, i) => !ended[i] && outcomes[i] === undefined);
        const { rows } = await observer.query<{ pid: number }>(
          `SELECT pid FROM pg_catalog.pg_stat_activity WHERE pid = ANY($1) AND wait_event_type = 'Lock'`,
          [open],
        );
        const finished = clients.some((_, i) => !ended[i] && outcomes[i] !== undefined);
        return finished && rows.length === open.length ? true : undefined;
      },
      {
        description: 'every transaction finished or blocked on a lock',
        attempts: 400,
        intervalMs: 25,
      },
    );
    for (const [i, client] of clients.entries()) {
      const outcome = outcomes[i];
      if (ended[i] || outcome === undefined) continue;
      await client.query(outcome.ok ? 'COMMIT' : 'ROLLBACK');
      ended[i] = true;
    }
  }
  await Promise.all(runs);
  return outcomes as Outcome[];
}
