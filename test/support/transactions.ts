import type pg from 'pg';

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
