import { afterAll, describe, expect, it } from 'vitest';
import { releaseOutboxLeases } from '../../src/db/outbox.ts';
import { createPool } from '../../src/db/pool.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { RelayerMetrics } from '../../src/observability/metrics.ts';
import { buildRailRegistry } from '../../src/rails/registry.ts';
import { Completer } from '../../src/relayer/completer.ts';
import { Dispatcher } from '../../src/relayer/dispatcher.ts';
import { enqueueAndClaim, readAttempts, readPending } from '../support/outbox-fixtures.ts';
import { waitUntil } from '../support/processes.ts';
import { startRailServer } from '../support/rail-server.ts';
import { relayerDatabase } from '../support/relayer.ts';

const WORKER = 'dispatcher-test';

describe('Dispatcher at shutdown', () => {
  it('hands back claimed items that never started, settles every task, and their leases can be released', async () => {
    const target = await relayerDatabase();
    const rail = await startRailServer();
    rail.setDefault({ status: 200, body: { reference: 'slow' }, delayMs: 300 });
    const pool = createPool({
      connectionString: target.login.url,
      applicationName: 'dispatcher test',
      max: 2,
    });
    afterAll(async () => {
      await pool.end();
      await rail.close();
    });
    const logger = createLogger({ level: 'silent', name: 'dispatcher-test' });
    const metrics = new RelayerMetrics();
    const dispatcher = new Dispatcher({
      concurrency: 1,
      dispatchTimeoutMs: 5_000,
      rails: buildRailRegistry({ sandbox: { type: 'http', url: rail.url } }),
      completer: new Completer({
        pool,
        workerId: WORKER,
        retry: { baseMs: 1000, maxMs: 2000, jitter: 0 },
        logger,
        metrics,
        onRetryScheduled: () => undefined,
      }),
      logger,
      onSlotFreed: () => undefined,
    });

    // Three items on one slot: one starts, two wait (the relayer itself never over-claims;
    // this is the state a stop must cope with anyway).
    const items = await enqueueAndClaim(target.db.owner, 3, {
      workerId: WORKER,
      prefix: 'unstarted',
    });
    dispatcher.submit(items);
    await waitUntil(async () => (rail.requests.length === 1 ? true : undefined), {
      description: 'the first item reaching the rail',
    });
    const unstarted = dispatcher.takeUnstarted();
    expect(unstarted).toHaveLength(2);
    expect(await dispatcher.drain(10_000)).toBe(true);

    const released = await releaseOutboxLeases(pool, WORKER, unstarted);
    expect(released.sort()).toEqual(unstarted.map((item) => item.outboxId).sort());
    for (const item of unstarted) {
      expect((await readPending(target.db.owner, item.outboxId))?.claimed_by).toBeNull();
    }
    const attempts = await readAttempts(
      target.db.owner,
      items.map((item) => item.outboxId),
    );
    expect(attempts.map((attempt) => attempt.state)).toEqual(['DISPATCHED']);
    expect(rail.requests).toHaveLength(1);
  });
});
