import { describe, expect, it, onTestFinished } from 'vitest';
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
  queueBulk,
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

  it('INV-QUEUE-SAMPLE-BOUNDED: past its bound the sample reads no more of the queue at 120,000 rows than at 60,000, is exact for small rails and oldest ages, scales large counts from a block sample, and says it estimated', async () => {
    await db.owner.query(
      'ALTER TABLE public.payment_outbox_pending SET (autovacuum_enabled = false)',
    );
    onTestFinished(async () => {
      await db.owner.query('ALTER TABLE public.payment_outbox_pending RESET (autovacuum_enabled)');
    });
    await queueBulk(db.owner, 50_000, { railType: 'bulk', secondsFromNow: -3600 });
    await queueBulk(db.owner, 10_000, { railType: 'bulk', secondsFromNow: 3600 });
    const card = await enqueueItems(db.owner, 3, { railType: 'card' });
    await scheduleAt(card[2]!, 600);
    const leased = await claimOutboxBatch(db.owner, {
      batchSize: 5,
      workerId: 'w',
      leaseSeconds: 60,
      railTypes: ['bulk'],
    });
    expect(leased).toHaveLength(5);

    /** A new sample, the queue rows and index entries it read, and the exact scans, at one now(). */
    const sampleOnce = async (exactPages?: number) => {
      // Rows read by scans and fetched through indexes (an index-only scan fetches each row
      // too while the visibility map is unset: autovacuum is off for this test), as a
      // difference: the counters may still hold earlier transactions' reads, not yet flushed.
      const rowsRead = async () => {
        const { rows } = await executor.query<{ read: string }>(
          `SELECT seq_tup_read + COALESCE(idx_tup_fetch, 0) AS read
             FROM pg_stat_xact_user_tables
            WHERE relid = 'public.payment_outbox_pending'::regclass`,
        );
        return Number(rows[0]?.read);
      };
      await executor.query('BEGIN');
      try {
        const before = await rowsRead();
        const sample = await outboxQueueSample(executor, 0, exactPages);
        const read = (await rowsRead()) - before;
        const stats = await outboxQueueStats(executor);
        const byRail = await outboxQueueStatsByRail(executor);
        return { sample, read, stats, byRail };
      } finally {
        await executor.query('COMMIT');
      }
    };

    // Within the default bound (2,000 heap pages; 60,000 rows are about half that): exact.
    const small = await sampleOnce();
    expect(small.sample?.estimated).toBe(false);
    expect(small.sample?.stats).toEqual(small.stats);
    expect(small.sample?.byRail).toEqual(small.byRail);

    // Past the bound (forced here with a bound of 0 pages), at 60,000 and at 120,000 rows.
    const at60k = await sampleOnce(0);
    await queueBulk(db.owner, 60_000, { railType: 'bulk', secondsFromNow: -1800 });
    const at120k = await sampleOnce(0);
    const exactAt120k = await sampleOnce(1_000_000);
    expect(exactAt120k.sample?.estimated).toBe(false);
    // The exact count reads every unleased entry; the estimate a bounded prefix per rail and
    // about 300 heap pages, however long the queue grows.
    expect(exactAt120k.read).toBeGreaterThanOrEqual(115_000);
    expect(at120k.read).toBeLessThan(1.1 * at60k.read);
    expect(at120k.read).toBeLessThan(exactAt120k.read);

    for (const { sample, stats, byRail } of [at60k, at120k]) {
      expect(sample?.estimated).toBe(true);
      // Exact: leases (from the lease index), the small rail, and every oldest due age.
      expect(sample?.stats.leased).toBe(5);
      expect(sample?.stats.expiredLeases).toBe(0);
      expect(sample?.stats.oldestDueAgeSeconds).toBe(stats.oldestDueAgeSeconds);
      const cardSample = sample?.byRail.find((rail) => rail.railType === 'card');
      expect(cardSample).toEqual(byRail.find((rail) => rail.railType === 'card'));
      expect(cardSample).toMatchObject({ pending: 3, due: 2 });
      // Estimated: the large rail's counts, within a quarter of the truth (the block sample
      // reads about 300 of 1,100-2,200 heap pages; its standard error is some 5 %).
      const bulkSample = sample?.byRail.find((rail) => rail.railType === 'bulk');
      const bulkExact = byRail.find((rail) => rail.railType === 'bulk');
      if (!bulkSample || !bulkExact) throw new Error('the bulk rail is missing from a sample');
      expect(bulkSample.oldestDueAgeSeconds).toBe(bulkExact.oldestDueAgeSeconds);
      for (const figure of ['pending', 'due'] as const) {
        expect(bulkSample[figure]).toBeGreaterThan(0.75 * bulkExact[figure]);
        expect(bulkSample[figure]).toBeLessThan(1.25 * bulkExact[figure]);
      }
      expect(sample?.stats.pending).toBe(
        sample?.byRail.reduce((sum, rail) => sum + rail.pending, 0),
      );
    }
  });

  it('refuses a max age outside 0..3600000 ms or an exact bound outside 0..1000000 pages (22023); only the executor may call it (42501)', async () => {
    await expectSqlState(outboxQueueSample(executor, -1), '22023');
    await expectSqlState(outboxQueueSample(executor, 3_600_001), '22023');
    await expectSqlState(outboxQueueSample(executor, 0, -1), '22023');
    await expectSqlState(outboxQueueSample(executor, 0, 1_000_001), '22023');
    await expectSqlState(outboxQueueSample(readonly, 0), '42501');
    await expectSqlState(outboxQueueSample(ingest, 0), '42501');
  });
});
