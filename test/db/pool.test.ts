import { describe, expect, it } from 'vitest';
import { createPool, openConnections } from '../../src/db/pool.ts';
import { freshDatabase } from '../support/database.ts';

const db = await freshDatabase();

describe('openConnections', () => {
  it('survives a connection the server cuts while it is checked out and idle, and the pool drops that connection', async () => {
    const pool = createPool({
      connectionString: db.ownerUrl,
      applicationName: 'pool-test',
      max: 3,
    });
    let cutOne = false;
    try {
      await openConnections(pool, 3, async (client) => {
        await client.query('SELECT 1');
        if (cutOne) return;
        cutOne = true;
        // Cut while no query runs on it: pg reports that as an 'error' event on the client,
        // which crashed a starting relayer when nothing listened (chaos run, seed 5).
        const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        const ended = new Promise((resolve) => client.once('end', resolve));
        await db.owner.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
        await ended;
      });
      expect(cutOne).toBe(true);
      expect({ total: pool.totalCount, idle: pool.idleCount }).toEqual({ total: 2, idle: 2 });
      const { rows } = await pool.query<{ one: number }>('SELECT 1 AS one');
      expect(rows).toEqual([{ one: 1 }]);
    } finally {
      await pool.end();
    }
  });
});
