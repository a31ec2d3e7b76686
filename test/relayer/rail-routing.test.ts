import { describe, expect, it } from 'vitest';
import { freePort } from '../../src/embedded/postgres.ts';
import { enqueueItems } from '../support/outbox-fixtures.ts';
import { waitUntil } from '../support/processes.ts';
import { relayerDatabase, spawnRelayer, waitForLog } from '../support/relayer.ts';

const alwaysDispatching = (railType: string) =>
  JSON.stringify({
    [railType]: {
      type: 'sandbox',
      latencyMs: [1, 3],
      outcomes: { DISPATCHED: 1, RETRYABLE: 0, FAILED: 0 },
    },
  });

describe('rail routing across processes', () => {
  it('INV-RELAY-RAIL-ROUTING: two processes serving different rails each claim only their own; a rail nobody serves waits, visible as due under rail="other"', async () => {
    const target = await relayerDatabase();
    const ports = [await freePort(), await freePort()];
    const workers = [
      spawnRelayer(
        target.env({
          SYMPHONY_WORKER_ID: 'serves-alpha',
          SYMPHONY_RAILS: alwaysDispatching('alpha'),
          SYMPHONY_HTTP_PORT: String(ports[0]),
          LOG_LEVEL: 'info',
        }),
      ),
      spawnRelayer(
        target.env({
          SYMPHONY_WORKER_ID: 'serves-beta',
          SYMPHONY_RAILS: alwaysDispatching('beta'),
          SYMPHONY_HTTP_PORT: String(ports[1]),
          LOG_LEVEL: 'info',
        }),
      ),
    ];
    try {
      await Promise.all(workers.map((worker) => waitForLog(worker, '"event":"worker_started"')));
      // Interleaved in time, so each claim meets the other rail's items first as often as not.
      for (let round = 0; round < 4; round += 1) {
        await enqueueItems(target.db.owner, 50, { prefix: `alpha-${round}`, railType: 'alpha' });
        await enqueueItems(target.db.owner, 50, { prefix: `beta-${round}`, railType: 'beta' });
        await enqueueItems(target.db.owner, 5, { prefix: `gamma-${round}`, railType: 'gamma' });
      }

      const byRail = async () => {
        const { rows } = await target.db.owner.query<{
          rail_type: string;
          worker_id: string | null;
          state: string | null;
          n: number;
        }>(
          `SELECT i.rail_type, a.worker_id, a.state::text AS state, count(*)::int AS n
             FROM payment_outbox_items i
             LEFT JOIN payment_outbox_attempts a USING (outbox_id)
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
        );
        return rows;
      };
      const settled = await waitUntil(
        async () => {
          const rows = await byRail();
          const done = rows
            .filter((row) => row.state === 'DISPATCHED')
            .reduce((sum, row) => sum + row.n, 0);
          return done === 400 ? rows : undefined;
        },
        { description: '400 alpha and beta items dispatched', attempts: 240 },
      );
      expect(settled).toEqual([
        { rail_type: 'alpha', worker_id: 'serves-alpha', state: 'DISPATCHED', n: 200 },
        { rail_type: 'beta', worker_id: 'serves-beta', state: 'DISPATCHED', n: 200 },
        // No attempt at all: never claimed, never FAILED.
        { rail_type: 'gamma', worker_id: null, state: null, n: 20 },
      ]);
      const { rows: waiting } = await target.db.owner.query<{ n: number; leased: number }>(
        `SELECT count(*)::int AS n, count(claimed_by)::int AS leased
           FROM payment_outbox_pending WHERE rail_type = 'gamma'`,
      );
      expect(waiting).toEqual([{ n: 20, leased: 0 }]);

      // Both workers show the unserved rail's due items under "other", and their own rail by name.
      for (const [index, own] of ['alpha', 'beta'].entries()) {
        const ownIdle = new RegExp(`^symphony_relay_queue_rail_due\\{rail="${own}"\\} 0$`, 'm');
        // One sample that shows both: the unserved rail's 20 due items, and none left of its own.
        const text = await waitUntil(
          async () => {
            const response = await fetch(`http://127.0.0.1:${ports[index]}/metrics`);
            const body = await response.text();
            return /^symphony_relay_queue_rail_due\{rail="other"\} 20$/m.test(body) &&
              ownIdle.test(body)
              ? body
              : undefined;
          },
          {
            description: `worker ${own} reporting 20 due items under rail="other" and none of its own`,
          },
        );
        expect(text).not.toMatch(/rail="gamma"/);
      }
    } finally {
      for (const worker of workers) worker.child.kill('SIGTERM');
      const exits = await Promise.all(workers.map((worker) => worker.exited));
      expect(exits.map((exit) => exit.code)).toEqual([0, 0]);
    }
  });
});
