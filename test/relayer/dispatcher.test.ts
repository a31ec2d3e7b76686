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

/** A dispatcher on an http rail to `railUrl`, recording into the test database. */
async function dispatcherFor(railUrl: string, concurrency: number) {
  const target = await relayerDatabase();
  const pool = createPool({
    connectionString: target.login.url,
    applicationName: 'dispatcher test',
    max: 2,
  });
  afterAll(() => pool.end());
  const logger = createLogger({ level: 'silent', name: 'dispatcher-test' });
  const dispatcher = new Dispatcher({
    concurrency,
    dispatchTimeoutMs: 5_000,
    rails: buildRailRegistry({ sandbox: { type: 'http', url: railUrl } }),
    completer: new Completer({
      pool,
      workerId: WORKER,
      retry: { baseMs: 1000, maxMs: 2000, jitter: 0 },
      logger,
      metrics: new RelayerMetrics(),
      onRetryScheduled: () => undefined,
    }),
    logger,
    onSlotFreed: () => undefined,
  });
  return { target, pool, dispatcher };
}

describe('Dispatcher slots', () => {
  it('never runs more rail calls than its slots, starts the waiting items first in first out, and records every one', async () => {
    const rail = await startRailServer();
    afterAll(() => rail.close());
    rail.setDefault({ status: 200, body: { reference: 'held' }, delayMs: 400 });
    // Counted by the rail as each request arrives: how many it holds unanswered.
    let mostAtOnce = 0;
    rail.respondWith(() => {
      const unanswered = rail.requests.filter((each) => each.status === undefined).length;
      mostAtOnce = Math.max(mostAtOnce, unanswered);
      return undefined;
    });
    const { target, dispatcher } = await dispatcherFor(rail.url, 2);
    const items = await enqueueAndClaim(target.db.owner, 6, { workerId: WORKER, prefix: 'slots' });

    dispatcher.submit(items);
    await waitUntil(async () => (rail.requests.length >= 2 ? true : undefined), {
      description: 'two items reaching the rail',
      intervalMs: 20,
    });
    expect(dispatcher.inFlight()).toBe(2);
    expect(dispatcher.freeSlots()).toBe(0);
    expect(await dispatcher.drain(10_000)).toBe(true);

    expect(mostAtOnce).toBe(2);
    expect(rail.requests.map((request) => (request.body as { outboxId: string }).outboxId)).toEqual(
      items.map((item) => item.outboxId),
    );
    const attempts = await readAttempts(
      target.db.owner,
      items.map((item) => item.outboxId),
    );
    expect(attempts.map((attempt) => attempt.state)).toEqual(Array(6).fill('DISPATCHED'));
    expect(dispatcher.inFlight()).toBe(0);
    expect(dispatcher.freeSlots()).toBe(2);
  });
});

describe('Dispatcher at shutdown', () => {
  it('hands back claimed items that never started, settles every task, and their leases can be released', async () => {
    const rail = await startRailServer();
    afterAll(() => rail.close());
    rail.setDefault({ status: 200, body: { reference: 'slow' }, delayMs: 300 });
    const { target, pool, dispatcher } = await dispatcherFor(rail.url, 1);

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
