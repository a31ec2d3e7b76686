import { beforeEach, describe, expect, it } from 'vitest';
import type { Runtime } from '../../src/cli/runtime.ts';
import { enqueueItems } from '../support/outbox-fixtures.ts';
import { waitUntil } from '../support/processes.ts';
import type { RailServer } from '../support/rail-server.ts';
import {
  attemptsOf,
  startRelayerOnHttpRail,
  waitForAllTerminal,
  type RelayerDatabase,
} from '../support/relayer.ts';

/** Long enough that the poll timer never fires during these tests. */
const TEN_MINUTES_MS = '600000';

async function metricValue(relayer: Runtime, name: string): Promise<number | undefined> {
  const metric = (await relayer.metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  return metric?.values[0]?.value;
}

describe('wake-ups without the poll timer', () => {
  let target: RelayerDatabase;
  let rail: RailServer;
  let relayer: Runtime;

  // A relayer of its own for every test: counts start at zero and no scripted answer
  // carries over, so the tests pass in any order and alone.
  beforeEach(async () => {
    const started = await startRelayerOnHttpRail({
      SYMPHONY_POLL_INTERVAL_MS: TEN_MINUTES_MS,
      SYMPHONY_REPAIR_INTERVAL_MS: TEN_MINUTES_MS,
    });
    ({ target, rail, relayer } = started);
    return started.stop;
  });

  it('picks up items enqueued after start through NOTIFY alone', async () => {
    await enqueueItems(target.db.owner, 20, { prefix: 'notify', railType: 'bank' });
    await waitForAllTerminal(target.db, 20);
  });

  it('wakes at the scheduled retry time of a RETRYABLE item', async () => {
    rail.respondNext({ status: 503, headers: { 'retry-after': '3' } });
    const [id] = await enqueueItems(target.db.owner, 1, { prefix: 'scheduled', railType: 'bank' });
    await waitForAllTerminal(target.db, 1);
    expect((await attemptsOf(target.db, id!)).map((a) => a.state)).toEqual([
      'RETRYABLE',
      'DISPATCHED',
    ]);
  });

  it('reconnects a killed listener and polls at once, stranding nothing', async () => {
    const killed = await target.db.owner.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'symphony-relay listener'`,
    );
    expect(killed.rowCount).toBe(1);
    // Enqueued while the listener is down or reconnecting: its NOTIFY may be lost.
    await enqueueItems(target.db.owner, 10, { prefix: 'lost-notify', railType: 'bank' });
    await waitForAllTerminal(target.db, 10);
    await waitUntil(
      async () =>
        (await metricValue(relayer, 'symphony_relay_listener_connected')) === 1 ? true : undefined,
      { description: 'listener reconnected' },
    );
    const reconnected = await target.db.owner.query(
      `SELECT 1 FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'symphony-relay listener'`,
    );
    expect(reconnected.rowCount).toBe(1);
    await enqueueItems(target.db.owner, 5, { prefix: 'after-reconnect', railType: 'bank' });
    await waitForAllTerminal(target.db, 15);
  });
});

describe('poll-only mode (for transaction-pooling PgBouncer)', () => {
  it('opens no LISTEN connection, is ready, and still delivers by polling', async () => {
    const { target, relayer, stop } = await startRelayerOnHttpRail({
      SYMPHONY_POLL_ONLY: 'true',
      SYMPHONY_POLL_INTERVAL_MS: '200',
    });
    try {
      await enqueueItems(target.db.owner, 10, { prefix: 'poll-only', railType: 'bank' });
      await waitForAllTerminal(target.db, 10);
      const listeners = await target.db.owner.query(
        `SELECT 1 FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'symphony-relay listener'`,
      );
      expect(listeners.rowCount).toBe(0);
      expect(relayer.relayer.readiness()).toMatchObject({ ready: true });
      expect(await metricValue(relayer, 'symphony_relay_listener_connected')).toBe(0);
    } finally {
      await stop();
    }
  });
});
