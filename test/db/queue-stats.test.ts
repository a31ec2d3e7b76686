import { describe, expect, it } from 'vitest';
import {
  claimOutboxBatch,
  outboxNextAttemptAt,
  outboxQueueSample,
  outboxQueueStats,
  outboxQueueStatsByRail,
} from '../../src/db/outbox.ts';
import {
  enqueueAndClaim,
  enqueueItems,
  expireLeases,
  outboxTestBed,
} from '../support/outbox-fixtures.ts';
import { connectAs } from '../support/role-boundaries.ts';
import { expectSqlState } from '../support/sqlstate.ts';

const { db } = await outboxTestBed({ emptyQueueBeforeEach: true });
const executor = await connectAs(db, 'symphony_executor');
const readonly = await connectAs(db, 'symphony_readonly');
const ingest = await connectAs(db, 'symphony_ingest');
const secondExecutor = await connectAs(db, 'symphony_executor');

/** Schedules unleased items relative to the database clock (negative = due that long ago). */
async function scheduleAt(outboxId: string, secondsFromNow: number): Promise<void> {
  await db.owner.query(
    `UPDATE public.payment_outbox_pending SET next_attempt_at = now() + $2 * interval '1 second' WHERE outbox_id = $1`,
    [outboxId, secondsFromNow],
  );
}

describe('outbox_next_attempt_at', () => {
  it('is null when no unleased item exists', async () => {
    expect(await outboxNextAttemptAt(executor)).toBeNull();
    await enqueueAndClaim(db.owner, 2, { workerId: 'w' });
    expect(await outboxNextAttemptAt(executor)).toBeNull();
  });

  it('INV-NEXT-ATTEMPT-UNLEASED: is the earliest next_attempt_at among unleased items, ignoring leased ones', async () => {
    // Both leased rows keep their (past) enqueue-time next_attempt_at, earlier than any other.
    const [live, expired] = await enqueueAndClaim(db.owner, 2, { workerId: 'w', leaseSeconds: 5 });
    const [later, sooner] = await enqueueItems(db.owner, 2);
    if (!live || !expired || !later || !sooner) throw new Error('fixture produced too few items');
    await expireLeases(db.owner, [expired.outboxId]);
    await scheduleAt(later, 600);
    await scheduleAt(sooner, 120);
    const { rows } = await db.owner.query<{ at: Date }>(
      'SELECT next_attempt_at AS at FROM public.payment_outbox_pending WHERE outbox_id = $1',
      [sooner],
    );
    expect(await outboxNextAttemptAt(executor)).toEqual(rows[0]?.at);
  });
});

describe('outbox_queue_stats', () => {
  it('is all zero with no age on an empty queue', async () => {
    expect(await outboxQueueStats(readonly)).toEqual({
      pending: 0,
      due: 0,
      leased: 0,
      expiredLeases: 0,
      oldestDueAgeSeconds: null,
    });
  });

  it('INV-QUEUE-STATS: counts pending, due (unleased and due), leases (live or expired) and expired leases awaiting repair', async () => {
    const [live1, live2, expired] = await enqueueAndClaim(db.owner, 3, { workerId: 'w' });
    const [dueOld, dueNew, future] = await enqueueItems(db.owner, 3);
    if (!live1 || !live2 || !expired || !dueOld || !dueNew || !future)
      throw new Error('fixture produced too few');
    await expireLeases(db.owner, [expired.outboxId]);
    await scheduleAt(dueOld, -100);
    await scheduleAt(dueNew, -5);
    await scheduleAt(future, 3600);

    const stats = await outboxQueueStats(executor);
    // The expired lease is leased, not due: only repair puts it back in the queue.
    expect(stats).toMatchObject({ pending: 6, due: 2, leased: 3, expiredLeases: 1 });
    // The oldest due item became due 100 s before the scheduling statement ran.
    expect(stats.oldestDueAgeSeconds).toBeGreaterThanOrEqual(100);
    expect(stats.oldestDueAgeSeconds).toBeLessThan(3600);
  });

  it('symphony_readonly and symphony_executor may read the stats; symphony_ingest may not (42501)', async () => {
    await outboxQueueStats(readonly);
    await outboxQueueStats(executor);
    await expectSqlState(outboxQueueStats(ingest), '42501');
    await expectSqlState(outboxNextAttemptAt(ingest), '42501');
    await expectSqlState(outboxNextAttemptAt(readonly), '42501');
  });
});

describe('outbox_queue_sample', () => {
  it('INV-QUEUE-SAMPLE-SHARED: one sample per interval for the fleet: a fresh sample is read, not retaken; a stale one is retaken with exact figures', async () => {
    await enqueueAndClaim(db.owner, 2, { workerId: 'w' });
    await enqueueItems(db.owner, 3);
    const first = await outboxQueueSample(executor, 0);
    expect(first?.stats).toMatchObject({ pending: 5, due: 3, leased: 2, expiredLeases: 0 });
    expect(first?.byRail).toEqual([
      expect.objectContaining({ railType: 'sandbox', pending: 5, due: 3 }),
    ]);

    // Another worker within the interval reads the stored sample: figures as of sampled_at.
    await enqueueItems(db.owner, 4);
    const shared = await outboxQueueSample(secondExecutor, 3_600_000);
    expect(shared?.sampledAt).toEqual(first?.sampledAt);
    expect(shared?.stats.pending).toBe(5);

    // Once the sample is older than the caller's max age, that caller takes a new one.
    const retaken = await outboxQueueSample(secondExecutor, 0);
    expect(retaken?.sampledAt.getTime()).toBeGreaterThan(first!.sampledAt.getTime());
    expect(retaken?.stats).toMatchObject({ pending: 9, due: 7, leased: 2 });
  });

  it('INV-QUEUE-SAMPLE-SHARED: while one worker is taking a sample, another reads the last one at once instead of scanning or waiting', async () => {
    await enqueueItems(db.owner, 2);
    const before = await outboxQueueSample(executor, 0);
    await enqueueItems(db.owner, 3);
    await executor.query('BEGIN');
    try {
      // This transaction holds the sampler's advisory lock until it ends.
      const taking = await outboxQueueSample(executor, 0);
      expect(taking?.stats.pending).toBe(5);
      const other = await outboxQueueSample(secondExecutor, 0);
      expect(other?.sampledAt).toEqual(before?.sampledAt);
      expect(other?.stats.pending).toBe(2);
    } finally {
      await executor.query('COMMIT');
    }
  });

  it('INV-QUEUE-SAMPLE-EXACT: the sample, read from the indexes, gives the figures of the exact scans over rails with due, future, leased, expired and only leased items', async () => {
    const bank = await enqueueItems(db.owner, 5, { railType: 'bank' });
    const card = await enqueueItems(db.owner, 2, { railType: 'card' });
    await enqueueItems(db.owner, 1, { railType: 'wallet' });
    // bank: two leased (one of them expired), two due, one not yet due; card: one due, one
    // not yet due; wallet: its only item leased.
    const leased = await claimOutboxBatch(db.owner, {
      batchSize: 2,
      workerId: 'w',
      leaseSeconds: 60,
      railTypes: ['bank'],
    });
    await claimOutboxBatch(db.owner, {
      batchSize: 1,
      workerId: 'w',
      leaseSeconds: 60,
      railTypes: ['wallet'],
    });
    const [expired] = leased;
    if (!expired || bank.length !== 5 || card.length !== 2) throw new Error('fixture too small');
    await expireLeases(db.owner, [expired.outboxId]);
    await scheduleAt(bank[2]!, -100);
    await scheduleAt(bank[4]!, 3600);
    await scheduleAt(card[1]!, 600);

    // One transaction: the same now() for the sample's ages and the scans'.
    await executor.query('BEGIN');
    try {
      const sample = await outboxQueueSample(executor, 0);
      const stats = await outboxQueueStats(executor);
      const byRail = await outboxQueueStatsByRail(executor);
      expect(stats).toMatchObject({ pending: 8, due: 3, leased: 3, expiredLeases: 1 });
      expect(byRail.map((rail) => [rail.railType, rail.pending, rail.due])).toEqual([
        ['bank', 5, 2],
        ['card', 2, 1],
        ['wallet', 1, 0],
      ]);
      expect(sample?.stats).toEqual(stats);
      expect(sample?.byRail).toEqual(byRail);
    } finally {
      await executor.query('COMMIT');
    }
  });

  it('refuses a max age outside 0..3600000 ms (22023); only the executor may call it (42501)', async () => {
    await expectSqlState(outboxQueueSample(executor, -1), '22023');
    await expectSqlState(outboxQueueSample(executor, 3_600_001), '22023');
    await expectSqlState(outboxQueueSample(readonly, 0), '42501');
    await expectSqlState(outboxQueueSample(ingest, 0), '42501');
  });
});
