import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { enqueueItems } from '../support/outbox-fixtures.ts';
import { waitUntil } from '../support/processes.ts';
import { startRailServer } from '../support/rail-server.ts';
import {
  attemptsOf,
  httpRails,
  relayerDatabase,
  spawnRelayer,
  startRelayerOnHttpRail,
  waitForAllTerminal,
  waitForLog,
  type RelayerDatabase,
} from '../support/relayer.ts';

async function leasedCount(target: RelayerDatabase): Promise<number> {
  const { rows } = await target.db.owner.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM payment_outbox_pending WHERE claimed_by IS NOT NULL',
  );
  return rows[0]?.n ?? -1;
}

describe('shutdown', () => {
  it('on SIGTERM mid-dispatch finishes in-flight work, leaves no lease behind and exits 0', async () => {
    const target = await relayerDatabase();
    const rail = await startRailServer();
    rail.setDefault({ status: 200, body: { reference: 'slow-ok' }, delayMs: 1_500 });
    const relayer = spawnRelayer(
      target.env({
        SYMPHONY_RAILS: httpRails(rail.url),
        SYMPHONY_CONCURRENCY: '4',
        SYMPHONY_SHUTDOWN_GRACE_MS: '10000',
        LOG_LEVEL: 'info',
      }),
    );
    try {
      await waitForLog(relayer, '"event":"worker_started"');
      await enqueueItems(target.db.owner, 10, { prefix: 'sigterm', railType: 'bank' });
      await waitUntil(async () => (rail.requests.length >= 4 ? true : undefined), {
        description: 'dispatches in flight',
      });
      relayer.child.kill('SIGTERM');
      const exit = await relayer.exited;
      expect({ exit, output: relayer.output().slice(-1500) }).toMatchObject({ exit: { code: 0 } });
      expect(await leasedCount(target)).toBe(0);
      // The four in flight were completed, not abandoned; the rest stay pending for another worker.
      const { rows } = await target.db.owner.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM payment_outbox_attempts WHERE state = 'DISPATCHED'`,
      );
      expect(rows[0]?.n).toBe(rail.requests.length);
      expect(relayer.output()).toContain('"event":"worker_stopped"');
    } finally {
      relayer.child.kill('SIGKILL');
      await rail.close();
    }
  });

  it('after SIGKILL mid-dispatch, another worker repairs the expired lease and dispatches the item', async () => {
    const target = await relayerDatabase();
    const rail = await startRailServer();
    rail.setDefault({ status: 200, body: { reference: 'never-answered' }, delayMs: 60_000 });
    const shortLease = {
      SYMPHONY_RAILS: httpRails(rail.url),
      SYMPHONY_LEASE_SECONDS: '3',
      SYMPHONY_DISPATCH_TIMEOUT_MS: '2000',
      SYMPHONY_LEASE_MARGIN_MS: '1000',
      LOG_LEVEL: 'info',
    };
    const doomed = spawnRelayer(target.env({ ...shortLease, SYMPHONY_WORKER_ID: 'doomed' }));
    await waitForLog(doomed, '"event":"worker_started"');
    const [id] = await enqueueItems(target.db.owner, 1, { prefix: 'sigkill', railType: 'bank' });
    await waitUntil(async () => (rail.requests.length >= 1 ? true : undefined), {
      description: 'the doomed worker dispatching',
    });
    doomed.child.kill('SIGKILL');
    await doomed.exited;
    expect(await leasedCount(target)).toBe(1);

    rail.setDefault({ status: 200, body: { reference: 'rescued' } });
    const rescuer = spawnRelayer(target.env({ ...shortLease, SYMPHONY_WORKER_ID: 'rescuer' }));
    try {
      await waitForAllTerminal(target.db, 1);
      const attempts = await attemptsOf(target.db, id!);
      expect(attempts.map((a) => [a.state, a.rail_reference])).toEqual([
        ['ZOMBIE_REQUEUE', null],
        ['DISPATCHED', 'rescued'],
      ]);
      const keys = new Set(rail.requests.map((request) => request.headers['idempotency-key']));
      expect(keys.size).toBe(1);
    } finally {
      rescuer.child.kill('SIGTERM');
      expect((await rescuer.exited).code).toBe(0);
      await rail.close();
    }
  });
});

describe('shutdown while a claim is under way (relayer in this process)', () => {
  it('releases the leases of items claimed as the stop began, without dispatching them', async () => {
    // The claim is held on a table lock while the stop begins, so the relayer holds leases
    // on items it has not started when it learns it is stopping: the state a stop must clean.
    let locker: pg.Client | undefined;
    let ids: string[] = [];
    const { target, rail, relayer, stop } = await startRelayerOnHttpRail(
      { SYMPHONY_CONCURRENCY: '8', SYMPHONY_POLL_ONLY: 'true' },
      async ({ target }) => {
        ids = await enqueueItems(target.db.owner, 5, {
          prefix: 'stop-mid-claim',
          railType: 'bank',
        });
        locker = await target.db.connect();
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE public.payment_outbox_pending IN EXCLUSIVE MODE');
      },
    );
    try {
      await waitUntil(
        async () => {
          const { rows } = await target.db.owner.query(
            `SELECT 1 FROM pg_catalog.pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'
                AND query LIKE '%claim_outbox_batch%'`,
          );
          return rows.length > 0 ? true : undefined;
        },
        {
          description: 'the relayer claim waiting on the table lock',
          attempts: 400,
          intervalMs: 25,
        },
      );
      const stopping = relayer.relayer.stop();
      await locker!.query('COMMIT');
      expect(await stopping).toEqual({ drainedInTime: true, released: 5 });

      const { rows } = await target.db.owner.query<{
        outbox_id: string;
        claimed_by: string | null;
      }>(`SELECT outbox_id, claimed_by FROM public.payment_outbox_pending ORDER BY outbox_id`);
      expect(rows).toEqual([...ids].sort().map((outbox_id) => ({ outbox_id, claimed_by: null })));
      const attempts = await target.db.owner.query('SELECT 1 FROM public.payment_outbox_attempts');
      expect(attempts.rowCount).toBe(0);
      expect(rail.requests).toHaveLength(0);
    } finally {
      await locker?.end();
      await stop();
    }
  });
});
