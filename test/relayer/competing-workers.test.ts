import { describe, expect, it } from 'vitest';
import { enqueueItems } from '../support/outbox-fixtures.ts';
import {
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
});
