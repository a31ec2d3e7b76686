import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { adminUrl } from '../support/database.ts';
import { enqueueItems } from '../support/outbox-fixtures.ts';
import { waitUntil } from '../support/processes.ts';
import { startRuntime } from '../../src/cli/runtime.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { captureLogs } from '../support/log-capture.ts';
import { startRailServer } from '../support/rail-server.ts';
import {
  httpRails,
  relayerDatabase,
  sleep,
  startRelayerOnHttpRail,
  waitForAllTerminal,
} from '../support/relayer.ts';

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

  it('while outcomes are being recorded: they are retried for as long as the lease lasts, so the rail is paid once', async () => {
    const capture = captureLogs();
    const target = await relayerDatabase();
    const rail = await startRailServer();
    // Every answer is held long enough for the outage below to begin while four
    // dispatches are in flight; each then has a 200 to record into an unreachable database.
    rail.setDefault({ status: 200, body: { reference: 'paid' }, delayMs: 1_000 });
    const relayer = await startRuntime(
      target.env({
        SYMPHONY_RAILS: httpRails(rail.url),
        SYMPHONY_POLL_INTERVAL_MS: '200',
        SYMPHONY_LEASE_SECONDS: '60',
      }),
      createLogger({ level: 'info', name: 'outage-test', destination: capture }),
    );
    const name = target.db.name;
    try {
      await enqueueItems(target.db.owner, 4, { prefix: 'paid-once', railType: 'bank' });
      await waitUntil(async () => (rail.requests.length >= 4 ? true : undefined), {
        description: 'four dispatches in flight',
      });
      await asAdmin(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS false`);
      await asAdmin('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [
        name,
      ]);
      // Longer than the old fixed retries (100 + 500 + 2,000 ms) after the answers arrive.
      await waitUntil(
        async () =>
          capture.records().filter((record) => record.event === 'completion_batch_failed').length >
          0
            ? true
            : undefined,
        { description: 'a recording attempt to fail during the outage' },
      );
      await sleep(4_000);
      await asAdmin(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS true`);
      await waitForAllTerminal(target.db, 4);
      const { rows } = await target.db.owner.query<{ state: string; n: number }>(
        `SELECT state::text, count(*)::int AS n FROM payment_outbox_attempts GROUP BY state`,
      );
      expect(rows).toEqual([{ state: 'DISPATCHED', n: 4 }]);
      const keys = rail.requests.map((request) => request.headers['idempotency-key']);
      expect(keys).toHaveLength(4);
      expect(new Set(keys).size).toBe(4);
      const events = capture.records().map((record) => record.event);
      expect(events).not.toContain('completion_failed');
      // Cut idle connections are one transition, not one line each.
      expect(events.filter((event) => event === 'pool_error').length).toBeLessThanOrEqual(1);
    } finally {
      await asAdmin(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS true`);
      await relayer.stop();
      await rail.close();
    }
  });
});
