import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { adminUrl } from '../support/database.ts';
import { enqueueItems } from '../support/outbox-fixtures.ts';
import { waitUntil } from '../support/processes.ts';
import { startRelayerOnHttpRail, waitForAllTerminal } from '../support/relayer.ts';

async function asAdmin(sql: string, params: unknown[] = []): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl() });
  await admin.connect();
  try {
    await admin.query(sql, params);
  } finally {
    await admin.end();
  }
}

describe('a database outage', () => {
  it('turns the relayer unready, and after recovery it delivers everything without a restart', async () => {
    const { target, relayer, stop } = await startRelayerOnHttpRail({
      SYMPHONY_POLL_INTERVAL_MS: '200',
      SYMPHONY_QUEUE_STATS_INTERVAL_MS: '200',
    });
    const name = target.db.name;
    try {
      await enqueueItems(target.db.owner, 5, { prefix: 'before', railType: 'bank' });
      await waitForAllTerminal(target.db, 5);

      // Nobody may connect, and every session of this database is cut.
      await asAdmin(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS false`);
      await asAdmin('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [
        name,
      ]);
      await waitUntil(
        async () => {
          const readiness = relayer.relayer.readiness();
          const database = readiness.checks?.find((check) => check.name === 'database');
          return !readiness.ready && database?.ok === false ? true : undefined;
        },
        { description: 'the relayer to report the database unreachable' },
      );

      await asAdmin(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS true`);
      await enqueueItems(target.db.owner, 20, { prefix: 'after', railType: 'bank' });
      await waitForAllTerminal(target.db, 25);
      await waitUntil(async () => (relayer.relayer.readiness().ready ? true : undefined), {
        description: 'the relayer to be ready again',
      });
      const { rows } = await target.db.owner.query<{ state: string; n: number }>(
        `SELECT state::text, count(*)::int AS n FROM payment_outbox_attempts GROUP BY state`,
      );
      expect(rows).toEqual([{ state: 'DISPATCHED', n: 25 }]);
    } finally {
      await asAdmin(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS true`);
      await stop();
    }
  });
});
