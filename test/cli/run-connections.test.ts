import { describe, expect, it } from 'vitest';
import { enqueueItems } from '../support/outbox-fixtures.ts';
import {
  relayerDatabase,
  spawnRelayer,
  waitForAllTerminal,
  waitForLog,
} from '../support/relayer.ts';

const ITEMS = 4000;
/** Every item DISPATCHED after 1-30 ms, so hundreds of slots are busy at once. */
const SLOW_SANDBOX = JSON.stringify({
  sandbox: {
    type: 'sandbox',
    latencyMs: [1, 30],
    outcomes: { DISPATCHED: 1, RETRYABLE: 0, FAILED: 0 },
  },
});

interface Backends {
  /** The most backends seen at once per application_name, and in all. */
  most: Map<string, number>;
  mostInAll: number;
}

async function backendsByApplication(
  target: Awaited<ReturnType<typeof relayerDatabase>>,
): Promise<{ application_name: string; n: number }[]> {
  const { rows } = await target.db.owner.query<{ application_name: string; n: number }>(
    `SELECT application_name, count(*)::int AS n FROM pg_catalog.pg_stat_activity
      WHERE usename = $1 GROUP BY application_name`,
    [target.login.name],
  );
  return rows;
}

/**
 * Samples pg_stat_activity for the login's backends until `until` settles. The pool keeps
 * its connections open, so every connection the relayer opened during the drain is still
 * counted at its end: the sampling cannot miss one.
 */
async function sampleBackends(
  target: Awaited<ReturnType<typeof relayerDatabase>>,
  until: Promise<unknown>,
): Promise<Backends> {
  const backends: Backends = { most: new Map(), mostInAll: 0 };
  let done = false;
  const finished = until.finally(() => (done = true));
  while (!done) {
    const rows = await backendsByApplication(target);
    for (const row of rows) {
      backends.most.set(
        row.application_name,
        Math.max(backends.most.get(row.application_name) ?? 0, row.n),
      );
    }
    backends.mostInAll = Math.max(
      backends.mostInAll,
      rows.reduce((sum, row) => sum + row.n, 0),
    );
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await finished;
  return backends;
}

describe('database connections per relayer process', () => {
  it.each([
    // The README's figures: 4 pool connections (the claim, 2 completion batches in flight,
    // one for repair and the queue sample) plus one LISTEN connection, however many slots.
    ['completion batches (the default), 1024 slots', 4, { SYMPHONY_CONCURRENCY: '1024' }],
    // Per-item completions: min(slots, 16) + 2.
    [
      'per-item completions, 1024 slots',
      18,
      { SYMPHONY_CONCURRENCY: '1024', SYMPHONY_COMPLETION_BATCH: 'false' },
    ],
  ])(
    'with %s: %i pool connections, opened at start and kept, plus one LISTEN connection, under a drain',
    async (_label, poolBound, settings) => {
      const target = await relayerDatabase();
      const workerId = `connections-${poolBound}`;
      const relayer = spawnRelayer(
        target.env({
          SYMPHONY_WORKER_ID: workerId,
          SYMPHONY_RAILS: SLOW_SANDBOX,
          LOG_LEVEL: 'info',
          ...settings,
        }),
      );
      try {
        await waitForLog(relayer, '"event":"worker_started"');
        // Every pool connection is open (and warm) before the worker starts claiming.
        const atStart = await backendsByApplication(target);
        expect(
          atStart.find((row) => row.application_name === `symphony-relay ${workerId}`)?.n,
        ).toBe(poolBound);
        await enqueueItems(target.db.owner, ITEMS);
        const backends = await sampleBackends(target, waitForAllTerminal(target.db, ITEMS));
        const pool = backends.most.get(`symphony-relay ${workerId}`) ?? 0;
        expect(backends.most.get('symphony-relay listener')).toBe(1);
        expect(pool).toBe(poolBound);
        expect(backends.mostInAll).toBeLessThanOrEqual(poolBound + 1);
        // Nothing else of the relayer's holds a connection (the identity check runs on the
        // pool's first connection).
        const known = ['symphony-relay listener', `symphony-relay ${workerId}`];
        expect([...backends.most.keys()].filter((name) => !known.includes(name))).toEqual([]);
      } finally {
        relayer.child.kill('SIGTERM');
        await relayer.exited;
      }
    },
    180_000,
  );
});
