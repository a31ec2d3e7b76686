import { describe, expect, it } from 'vitest';
import { enqueueItems } from '../support/outbox-fixtures.ts';
import { waitUntil } from '../support/processes.ts';
import {
  outboxTotals,
  relayerDatabase,
  spawnRelayer,
  waitForAllTerminal,
  waitForLog,
} from '../support/relayer.ts';

const ALWAYS_DISPATCH = JSON.stringify({
  sandbox: {
    type: 'sandbox',
    latencyMs: [1, 5],
    outcomes: { DISPATCHED: 1, RETRYABLE: 0, FAILED: 0 },
  },
});

describe('competing relayer processes', () => {
  it('gives every one of 2,000 items exactly one terminal attempt across two processes', async () => {
    const target = await relayerDatabase();
    const env = (worker: string) =>
      target.env({
        SYMPHONY_WORKER_ID: worker,
        SYMPHONY_RAILS: ALWAYS_DISPATCH,
        LOG_LEVEL: 'info',
      });
    const workers = [spawnRelayer(env('worker-a')), spawnRelayer(env('worker-b'))];
    try {
      await Promise.all(workers.map((worker) => waitForLog(worker, '"event":"worker_started"')));
      await enqueueItems(target.db.owner, 2_000, {
        prefix: 'race',
        participants: ['p1', 'p2', 'p3'],
      });
      await waitForAllTerminal(target.db, 2_000);

      const { rows } = await target.db.owner.query<{ outbox_id: string; terminal: number }>(
        `SELECT outbox_id, count(*) FILTER (WHERE state IN ('DISPATCHED', 'FAILED'))::int AS terminal
           FROM payment_outbox_attempts GROUP BY outbox_id`,
      );
      expect(rows).toHaveLength(2_000);
      expect(rows.filter((row) => row.terminal !== 1)).toEqual([]);
      const byWorker = await target.db.owner.query<{ worker_id: string; n: number }>(
        `SELECT worker_id, count(*)::int AS n FROM payment_outbox_attempts GROUP BY worker_id ORDER BY worker_id`,
      );
      // Both processes really competed for the same rows.
      expect(byWorker.rows.map((row) => row.worker_id)).toEqual(['worker-a', 'worker-b']);
    } finally {
      for (const worker of workers) worker.child.kill('SIGTERM');
      const exits = await Promise.all(workers.map((worker) => worker.exited));
      expect(exits.map((exit) => exit.code)).toEqual([0, 0]);
    }
  });

  it('under the pipelined claim and completion: four processes, retries, a short lease and one SIGKILL mid-drain leave every item exactly one terminal attempt', async () => {
    const target = await relayerDatabase();
    const items = 3_000;
    // Small claims on many slots, so every worker claims again and again while several
    // completion batches are in flight; a fifth of the dispatches come back RETRYABLE and are claimed again.
    const env = (worker: string) =>
      target.env({
        SYMPHONY_WORKER_ID: worker,
        SYMPHONY_RAILS: JSON.stringify({
          sandbox: {
            type: 'sandbox',
            latencyMs: [0, 3],
            outcomes: { DISPATCHED: 0.8, RETRYABLE: 0.2, FAILED: 0 },
          },
        }),
        SYMPHONY_CONCURRENCY: '64',
        SYMPHONY_BATCH_SIZE: '8',
        SYMPHONY_RETRY_BASE_MS: '10',
        SYMPHONY_RETRY_MAX_MS: '50',
        SYMPHONY_LEASE_SECONDS: '3',
        SYMPHONY_DISPATCH_TIMEOUT_MS: '1000',
        SYMPHONY_LEASE_MARGIN_MS: '1000',
        SYMPHONY_REPAIR_INTERVAL_MS: '500',
        LOG_LEVEL: 'info',
      });
    const names = ['worker-a', 'worker-b', 'worker-c', 'worker-d'];
    const workers = names.map((name) => spawnRelayer(env(name)));
    const victim = workers[1]!;
    try {
      await Promise.all(workers.map((worker) => waitForLog(worker, '"event":"worker_started"')));
      await enqueueItems(target.db.owner, items, {
        prefix: 'pipeline',
        participants: ['p1', 'p2', 'p3', 'p4', 'p5'],
      });
      // Killed while it holds leases and unrecorded outcomes: repair must hand them on.
      await waitUntil(
        async () => ((await outboxTotals(target.db)).terminal >= items / 5 ? true : undefined),
        { description: 'a fifth of the items recorded', attempts: 480 },
      );
      victim.child.kill('SIGKILL');
      await waitForAllTerminal(target.db, items);

      const { rows } = await target.db.owner.query<{
        outbox_id: string;
        terminal: number;
        dispatched: number;
      }>(
        `SELECT i.outbox_id,
                count(a.*) FILTER (WHERE a.state IN ('DISPATCHED', 'FAILED'))::int AS terminal,
                count(a.*) FILTER (WHERE a.state = 'DISPATCHED')::int AS dispatched
           FROM payment_outbox_items i
           LEFT JOIN payment_outbox_attempts a ON a.outbox_id = i.outbox_id
          GROUP BY i.outbox_id`,
      );
      // No item lost, none recorded terminal twice, none paid twice in the ledger.
      expect(rows).toHaveLength(items);
      expect(rows.filter((row) => row.terminal !== 1 || row.dispatched > 1)).toEqual([]);
      const retried = await target.db.owner.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM payment_outbox_attempts WHERE state = 'RETRYABLE'`,
      );
      expect(retried.rows[0]!.n).toBeGreaterThan(0);
      const byWorker = await target.db.owner.query<{ worker_id: string }>(
        `SELECT DISTINCT worker_id FROM payment_outbox_attempts ORDER BY worker_id`,
      );
      expect(byWorker.rows.map((row) => row.worker_id)).toEqual(names);
    } finally {
      for (const worker of workers) worker.child.kill('SIGTERM');
      const exits = await Promise.all(workers.map((worker) => worker.exited));
      expect(exits.map((exit) => exit.code)).toEqual([0, null, 0, 0]);
    }
  }, 240_000);
});
