import { describe, expect, it } from 'vitest';
import type pg from 'pg';
import {
  claimOutboxBatch,
  completeOutboxAttempt,
  repairExpiredLeases,
  warmUpClaims,
  type ClaimedItem,
} from '../../src/db/outbox.ts';
import { pauseDispatch, resumeDispatch } from '../../src/db/controls.ts';
import { LeaseLostError } from '../../src/db/errors.ts';
import {
  enqueueAndClaim,
  enqueueItems,
  expireLeases,
  makeDue,
  outboxTestBed,
  readAttempts,
  readPending,
} from '../support/outbox-fixtures.ts';
import { expectSqlState } from '../support/sqlstate.ts';
import { claimPlans, nestedPlans, readsWhole, sortsDueRows } from '../support/statement-plans.ts';
import { freshDatabase } from '../support/database.ts';

const { db, clients } = await outboxTestBed({ connections: 8, emptyQueueBeforeEach: true });

/** A database of its own: the other tests here analyze the queue. Autovacuum is kept off its
 * queue and item record, so nothing analyzes them while the test runs. */
const neverAnalyzed = await freshDatabase();
for (const table of ['payment_outbox_pending', 'payment_outbox_items']) {
  await neverAnalyzed.owner.query(`ALTER TABLE public.${table} SET (autovacuum_enabled = false)`);
}

async function drain(
  client: pg.Client,
  workerId: string,
  railTypes = ['sandbox'],
): Promise<ClaimedItem[]> {
  const claimed: ClaimedItem[] = [];
  for (;;) {
    const batch = await claimOutboxBatch(client, {
      batchSize: 25,
      workerId,
      leaseSeconds: 300,
      railTypes,
    });
    if (batch.length === 0) return claimed;
    claimed.push(...batch);
  }
}

describe('claim_outbox_batch', () => {
  it('INV-CLAIM-EXACTLY-ONCE: 8 concurrent claimers over 1,000 due rows claim every row exactly once, on one rail and across three', async () => {
    // One rail (one locking scan per claim), then three (each rail's share locked on its own).
    for (const railTypes of [['sandbox'], ['sandbox', 'second', 'third']]) {
      const ids = (
        await Promise.all(
          railTypes.map((railType) =>
            enqueueItems(db.owner, Math.ceil(1000 / railTypes.length), { railType }),
          ),
        )
      ).flat();
      const perWorker = await Promise.all(
        clients.map((client, index) => drain(client, `claimer-${index}`, railTypes)),
      );

      const claimedIds = perWorker.flat().map((item) => item.outboxId);
      expect(claimedIds).toHaveLength(ids.length);
      expect(new Set(claimedIds)).toEqual(new Set(ids));
      // Every row is leased to the worker that received it, with the token it received.
      const { rows } = await db.owner.query<{
        outbox_id: string;
        claimed_by: string;
        lease_token: string;
      }>('SELECT outbox_id, claimed_by, lease_token FROM public.payment_outbox_pending');
      const holder = new Map(rows.map((row) => [row.outbox_id, row]));
      perWorker.forEach((items, index) => {
        for (const item of items) {
          expect(holder.get(item.outboxId)).toEqual({
            outbox_id: item.outboxId,
            claimed_by: `claimer-${index}`,
            lease_token: item.leaseToken,
          });
        }
      });
      await db.owner.query('DELETE FROM public.payment_outbox_pending');
    }
  });

  it('returns every column the relayer needs, including created_at', async () => {
    const [id] = await enqueueItems(db.owner, 1, { prefix: 'columns' });
    const [item] = await claimOutboxBatch(db.owner, {
      batchSize: 10,
      workerId: 'w',
      leaseSeconds: 30,
      railTypes: ['sandbox'],
    });
    expect(item).toMatchObject({
      outboxId: id,
      instructionId: 'columns-1',
      participantId: 'columns-participant',
      sequenceId: '1',
      idempotencyKey: 'columns-key-1',
      railType: 'sandbox',
      payload: { n: 1 },
      attemptCount: 0,
    });
    expect(item?.createdAt).toBeInstanceOf(Date);
    expect(item?.leaseExpiresAt).toBeInstanceOf(Date);
    expect(item?.leaseToken).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('INV-CLAIM-DUE-ONLY: rows not yet due are never returned', async () => {
    const ids = await enqueueItems(db.owner, 5);
    await db.owner.query(
      `UPDATE public.payment_outbox_pending SET next_attempt_at = now() + interval '1 hour' WHERE outbox_id = ANY($1::uuid[])`,
      [ids.slice(0, 3)],
    );
    const claimed = await claimOutboxBatch(db.owner, {
      batchSize: 100,
      workerId: 'w',
      leaseSeconds: 30,
      railTypes: ['sandbox'],
    });
    expect(new Set(claimed.map((item) => item.outboxId))).toEqual(new Set(ids.slice(3)));
  });

  it('INV-CLAIM-LIVE-LEASE-EXCLUSIVE: a row under a live lease is never returned, to any worker', async () => {
    await enqueueAndClaim(db.owner, 3, { workerId: 'holder', leaseSeconds: 300 });
    for (const [index, client] of clients.entries()) {
      expect(
        await claimOutboxBatch(client, {
          batchSize: 100,
          workerId: `other-${index}`,
          leaseSeconds: 30,
          railTypes: ['sandbox'],
        }),
      ).toEqual([]);
    }
  });

  it('INV-CLAIM-EXPIRED-LEASE-REPAIR-ONLY: an expired lease is never claimed; after repair the item is claimable and the old token is fenced off (P7002)', async () => {
    const [stale] = await enqueueAndClaim(db.owner, 1, { workerId: 'crashed', leaseSeconds: 300 });
    if (!stale) throw new Error('fixture claimed nothing');
    await expireLeases(db.owner, [stale.outboxId]);
    // A due, unleased item alongside, so an empty answer cannot mean "claim found nothing at all".
    const [bystander] = await enqueueItems(db.owner, 1);

    const perClaimer = await Promise.all(
      clients.map((client, index) =>
        claimOutboxBatch(client, {
          batchSize: 100,
          workerId: `claimer-${index}`,
          leaseSeconds: 300,
          railTypes: ['sandbox'],
        }),
      ),
    );
    expect(perClaimer.flat().map((item) => item.outboxId)).toEqual([bystander]);
    expect(await readPending(db.owner, stale.outboxId)).toMatchObject({
      claimed_by: 'crashed',
      lease_token: stale.leaseToken,
    });
    expect(await readAttempts(db.owner, [stale.outboxId])).toEqual([]);

    expect(await repairExpiredLeases(db.owner, { batchSize: 10, workerId: 'repairer' })).toEqual([
      { outboxId: stale.outboxId, attemptNo: 1 },
    ]);
    expect(
      (await readAttempts(db.owner, [stale.outboxId])).map((attempt) => attempt.state),
    ).toEqual(['ZOMBIE_REQUEUE']);

    // Repair reschedules the item a second later; skip the wait rather than sleep.
    await makeDue(db.owner, [stale.outboxId]);
    const [fresh, ...more] = await claimOutboxBatch(db.owner, {
      batchSize: 10,
      workerId: 'rescuer',
      leaseSeconds: 300,
      railTypes: ['sandbox'],
    });
    expect(more).toEqual([]);
    expect(fresh).toMatchObject({ outboxId: stale.outboxId, attemptCount: 1 });
    expect(fresh?.leaseToken).not.toBe(stale.leaseToken);

    const error = await expectSqlState(
      completeOutboxAttempt(db.owner, 'crashed', {
        outboxId: stale.outboxId,
        leaseToken: stale.leaseToken,
        state: 'DISPATCHED',
      }),
      'P7002',
    );
    expect(error).toBeInstanceOf(LeaseLostError);
    expect(await readPending(db.owner, stale.outboxId)).toMatchObject({
      claimed_by: 'rescuer',
      lease_token: fresh?.leaseToken,
    });
    expect(await readAttempts(db.owner, [stale.outboxId])).toHaveLength(1);
  });

  it('INV-PENDING-LEASE-ALL-OR-NOTHING: a half-set lease is refused with 23514', async () => {
    const [id] = await enqueueItems(db.owner, 1);
    for (const assignment of [
      `claimed_by = 'w'`,
      `lease_token = uuidv7()`,
      `lease_expires_at = now()`,
      `claimed_by = 'w', lease_token = uuidv7()`,
    ]) {
      await expectSqlState(
        db.owner.query(
          `UPDATE public.payment_outbox_pending SET ${assignment} WHERE outbox_id = $1`,
          [id],
        ),
        '23514',
      );
    }
  });

  it('refuses a non-positive batch size or lease, and an empty worker id, with 22023', async () => {
    await expectSqlState(
      claimOutboxBatch(db.owner, {
        batchSize: -1,
        workerId: 'w',
        leaseSeconds: 30,
        railTypes: ['sandbox'],
      }),
      '22023',
    );
    await expectSqlState(
      claimOutboxBatch(db.owner, {
        batchSize: 10,
        workerId: 'w',
        leaseSeconds: 0,
        railTypes: ['sandbox'],
      }),
      '22023',
    );
    await expectSqlState(
      claimOutboxBatch(db.owner, {
        batchSize: 10,
        workerId: ' ',
        leaseSeconds: 30,
        railTypes: ['sandbox'],
      }),
      '22023',
    );
    // Zero free slots claims nothing and never reaches the database.
    expect(
      await claimOutboxBatch(db.owner, {
        batchSize: 0,
        workerId: 'w',
        leaseSeconds: 30,
        railTypes: ['sandbox'],
      }),
    ).toEqual([]);
  });

  it('INV-CLAIM-USES-DUE-INDEX: on 100k rows the claim scan uses ix_pending_due_by_rail', async () => {
    // Every tenth row is leased (half of those expired), and leased rows carry the oldest
    // next_attempt_at: a scan that had to walk past them would meet them first.
    await db.owner.query(
      `INSERT INTO public.payment_outbox_items
         (outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
          payload, payload_sha256)
       SELECT uuidv7(), 'bulk-' || g, 'bulk-participant-' || (g % 50), g, 'bulk-key-' || g,
              'sandbox', '{}'::jsonb, repeat('0', 64)
         FROM generate_series(1, 100000) AS g`,
    );
    await db.owner.query(
      `INSERT INTO public.payment_outbox_pending
         (outbox_id, participant_id, sequence_id, rail_type,
          next_attempt_at, claimed_by, lease_token, lease_expires_at)
       SELECT i.outbox_id, i.participant_id, g, 'sandbox',
              CASE WHEN leased THEN now() - interval '2 hours'
                   ELSE now() - (g % 3600) * interval '1 second' + (g % 7) * interval '1 hour' END,
              CASE WHEN leased THEN 'bulk-worker' END,
              CASE WHEN leased THEN uuidv7() END,
              CASE WHEN leased THEN now() + CASE WHEN g % 20 = 0 THEN -60 ELSE 300 END * interval '1 second' END
         FROM public.payment_outbox_items i
        CROSS JOIN LATERAL (SELECT i.sequence_id AS g) AS n
        CROSS JOIN LATERAL (SELECT g % 10 = 0 AS leased) AS l
        WHERE i.instruction_id LIKE 'bulk-%'`,
    );
    await db.owner.query('ANALYZE public.payment_outbox_pending');

    // The same SELECT as the claim's locking scan of one rail, in outbox_lock_due (asserted
    // against its source below).
    const dueSelect = `SELECT d.outbox_id
      FROM public.payment_outbox_pending d
     WHERE d.claimed_by IS NULL
       AND d.next_attempt_at <= now()
       AND d.rail_type = 'sandbox'
       AND d.participant_id <> ALL ('{}'::text[])
     ORDER BY d.next_attempt_at, d.created_at
     LIMIT 100
     FOR UPDATE SKIP LOCKED`;
    const { rows: source } = await db.owner.query<{ src: string }>(
      `SELECT prosrc AS src FROM pg_proc WHERE oid = 'public.outbox_lock_due(text[], text[], int)'::regprocedure`,
    );
    const normalise = (sql: string) =>
      sql
        .replace(/\s+/g, ' ')
        .replace(/LIMIT \S+/g, 'LIMIT n')
        .replace(/d\.rail_type = \S+/g, 'd.rail_type = rail')
        .replace(/<> ALL \(\S+\)/g, '<> ALL (paused)');
    expect(normalise(source[0]?.src ?? '')).toContain(normalise(dueSelect));

    const { rows } = await db.owner.query<{ 'QUERY PLAN': unknown }>(
      `EXPLAIN (FORMAT JSON) ${dueSelect}`,
    );
    const plan = JSON.stringify(rows[0]?.['QUERY PLAN']);
    expect(plan).toContain('"Index Name":"ix_pending_due_by_rail"');
    expect(plan).not.toContain('"Node Type":"Seq Scan"');

    // Leased rows are not in the partial index, so the scan never fetches one only to drop
    // it. (PostgreSQL keeps `claimed_by IS NULL` as a Filter on a FOR UPDATE scan, for the
    // recheck of a row another claimer leased meanwhile; on a quiet table it removes nothing.)
    const session = clients[0];
    if (!session) throw new Error('no client');
    await session.query('BEGIN');
    try {
      const { rows: analysed } = await session.query<{ 'QUERY PLAN': unknown }>(
        `EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF, FORMAT JSON) ${dueSelect}`,
      );
      const executed = JSON.stringify(analysed[0]?.['QUERY PLAN']);
      expect(executed).toContain('"Index Name":"ix_pending_due_by_rail"');
      expect(executed).toContain('"Rows Removed by Filter":0');
      expect(executed).not.toMatch(/"Rows Removed by Filter":[1-9]/);
    } finally {
      await session.query('ROLLBACK');
    }

    // And the claim itself skips the 10,000 leased rows, expired ones included.
    const claimed = await claimOutboxBatch(db.owner, {
      batchSize: 100,
      workerId: 'w',
      leaseSeconds: 30,
      railTypes: ['sandbox'],
    });
    expect(claimed).toHaveLength(100);
    expect(claimed.every((item) => !item.instructionId.endsWith('0'))).toBe(true);
  });

  it('INV-CLAIM-PLAN-ON-INDEXES: at 20k due rows, every statement of a claim of 256 runs on indexes, custom and generic plans alike (auto_explain of the nested statements)', async () => {
    await db.owner.query(
      `INSERT INTO public.payment_outbox_items
         (outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
          payload, payload_sha256)
       SELECT uuidv7(), 'plan-' || g, 'plan-participant-' || (g % 50), g, 'plan-key-' || g,
              'sandbox', '{}'::jsonb, repeat('0', 64)
         FROM generate_series(1, 20000) AS g`,
    );
    await db.owner.query(
      `INSERT INTO public.payment_outbox_pending
         (outbox_id, participant_id, sequence_id, rail_type, next_attempt_at)
       SELECT i.outbox_id, i.participant_id, i.sequence_id, 'sandbox', now() - interval '1 minute'
         FROM public.payment_outbox_items i WHERE i.instruction_id LIKE 'plan-%'`,
    );
    await db.owner.query('ANALYZE public.payment_outbox_pending, public.payment_outbox_items');
    const session = clients[1];
    if (!session) throw new Error('no client');
    const { plans, claimed } = await claimPlans(session);
    expect(claimed).toEqual([256, 256, 256, 256, 256, 256]);
    const leasing = plans.filter((plan) => plan.includes('UPDATE public.payment_outbox_pending'));
    expect(leasing.length).toBeGreaterThanOrEqual(6);
    const nested = nestedPlans(plans);
    expect(nested.length).toBeGreaterThanOrEqual(12);
    expect(nested.filter(readsWhole)).toEqual([]);
    expect(nested.some((plan) => plan.includes('"Index Name": "ix_pending_due_by_rail"'))).toBe(
      true,
    );
  });

  it('INV-CLAIM-PLAN-WITHOUT-STATISTICS: on a queue of 20k due rows never analyzed, the claim still reads due ids in index order, custom and generic plans alike', async () => {
    const fresh = neverAnalyzed;
    await enqueueItems(fresh.owner, 20_000, {
      participants: Array.from({ length: 16 }, (_, n) => `fresh-participant-${n}`),
    });
    const { rows: stats } = await fresh.owner.query<{ analyzed: boolean }>(
      `SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL AS analyzed
         FROM pg_stat_user_tables WHERE relname = 'payment_outbox_pending'`,
    );
    expect(stats).toEqual([{ analyzed: false }]);

    const session = await fresh.connect();
    try {
      const { plans, claimed } = await claimPlans(session);
      expect(claimed).toEqual([256, 256, 256, 256, 256, 256]);
      const picks = nestedPlans(plans).filter((plan) =>
        plan.includes('ORDER BY d.next_attempt_at'),
      );
      expect(picks).toHaveLength(6);
      // Without 0037 the planner estimated one due row, read all 20,000 with a bitmap scan
      // and sorted them, on every custom plan.
      expect(picks.filter(sortsDueRows)).toEqual([]);
      expect(picks.filter(readsWhole)).toEqual([]);
      expect(picks.every((plan) => plan.includes('"Index Name": "ix_pending_due_by_rail"'))).toBe(
        true,
      );
    } finally {
      await session.end();
    }
  });

  it("INV-CLAIM-LEASE-PLANNED-ONCE: a new connection's first claim already leases on the generic plan, so no claim plans its lease statement afresh", async () => {
    await enqueueItems(db.owner, 20);
    // A connection of its own: PL/pgSQL keeps plans per connection, and auto (the default)
    // makes custom plans, with the claimed ids written into them, for the first five calls.
    const session = await db.connect();
    try {
      const { plans, claimed } = await claimPlans(session, { calls: 2, batchSize: 5 });
      expect(claimed).toEqual([5, 5]);
      const leasing = nestedPlans(plans).filter((plan) =>
        plan.includes('UPDATE public.payment_outbox_pending'),
      );
      expect(leasing).toHaveLength(2);
      // A generic plan looks the ids up by parameter; a custom one carries them as a constant.
      for (const plan of leasing) {
        expect(plan).toMatch(/"Index Cond": "\(p?\.?outbox_id = ANY \(\$\d+\)\)"/);
        expect(plan).not.toMatch(/ANY \('\{/);
      }
    } finally {
      await session.end();
    }
  });

  it("INV-CLAIM-READS-ITS-RAILS: behind 20k due rows of a paused rail and of a rail the worker does not serve, a claim over two rails takes the first due rows of those two in due order and reads no other rail's row", async () => {
    // 20,000 due rows held back, all due before the rest: a paused rail's and another's.
    await db.owner.query(
      `INSERT INTO public.payment_outbox_items
         (outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
          payload, payload_sha256)
       SELECT uuidv7(), 'held-' || g, 'held-participant-' || (g % 50), g, 'held-key-' || g,
              CASE WHEN g % 2 = 0 THEN 'held' ELSE 'elsewhere' END, '{}'::jsonb, repeat('0', 64)
         FROM generate_series(1, 20000) AS g`,
    );
    await db.owner.query(
      `INSERT INTO public.payment_outbox_pending
         (outbox_id, participant_id, sequence_id, rail_type, next_attempt_at)
       SELECT i.outbox_id, i.participant_id, i.sequence_id, i.rail_type, now() - interval '2 hours'
         FROM public.payment_outbox_items i WHERE i.instruction_id LIKE 'held-%'`,
    );
    // 30 items on each of two served rails, due in turn: first, second, first, second, ...
    const first = await enqueueItems(db.owner, 30, { railType: 'sandbox' });
    const second = await enqueueItems(db.owner, 30, { railType: 'second' });
    await db.owner.query(
      `UPDATE public.payment_outbox_pending p
          SET next_attempt_at = now() - interval '1 hour' + x.turn * interval '1 second'
         FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS t(a, b, n)
        CROSS JOIN LATERAL (VALUES (t.a, 2 * t.n), (t.b, 2 * t.n + 1)) AS x(id, turn)
        WHERE p.outbox_id = x.id`,
      [first, second],
    );
    await db.owner.query('ANALYZE public.payment_outbox_pending');
    const held = { scope: 'rail' as const, target: 'held', reason: 'INV-CLAIM-READS-ITS-RAILS' };
    await pauseDispatch(db.owner, held);
    const session = clients[0];
    if (!session) throw new Error('no client');
    try {
      await session.query('BEGIN');
      const claimed = await claimOutboxBatch(session, {
        batchSize: 40,
        workerId: 'two-rails',
        leaseSeconds: 30,
        railTypes: ['sandbox', 'second', 'held'],
      });
      // Rows this transaction read from the queue, by index or by scan.
      const { rows } = await session.query<{ read: string }>(
        `SELECT idx_tup_fetch + seq_tup_read AS read
           FROM pg_stat_xact_user_tables WHERE relid = 'public.payment_outbox_pending'::regclass`,
      );
      await session.query('ROLLBACK');
      expect(claimed.map((item) => item.outboxId).sort()).toEqual(
        [...first.slice(0, 20), ...second.slice(0, 20)].sort(),
      );
      // A walk of every rail's due rows together reads the 20,000 held ones first. The bound
      // leaves room for the dead rows earlier tests left in the served rails' index.
      expect(Number(rows[0]?.read)).toBeLessThan(10_000);
    } finally {
      await resumeDispatch(db.owner, held);
    }
  });
});

describe('warmUpClaims (a new connection of a worker, at start)', () => {
  it('leases nothing and records nothing: its claim of one item is rolled back', async () => {
    const ids = await enqueueItems(db.owner, 3);
    const before = await Promise.all(ids.map((id) => readPending(db.owner, id)));
    await warmUpClaims(clients[0]!, { workerId: 'warming', railTypes: ['sandbox'] });
    expect(await Promise.all(ids.map((id) => readPending(db.owner, id)))).toEqual(before);
    for (const row of before) expect(row?.claimed_by).toBeNull();
    expect(await readAttempts(db.owner, ids)).toEqual([]);
    // The connection is usable afterwards, outside any transaction, and claims as usual.
    const claimed = await drain(clients[0]!, 'after-warming');
    expect(claimed.map((item) => item.outboxId).sort()).toEqual([...ids].sort());
  });

  it('gives up on warming, without an error, when the queue is locked at start', async () => {
    const ids = await enqueueItems(db.owner, 1);
    const locker = clients[1]!;
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE public.payment_outbox_pending IN EXCLUSIVE MODE');
    try {
      await warmUpClaims(clients[0]!, { workerId: 'warming', railTypes: ['sandbox'] });
    } finally {
      await locker.query('ROLLBACK');
    }
    expect((await readPending(db.owner, ids[0]!))?.claimed_by).toBeNull();
    // Rolled back: the connection is outside any transaction (this statement's own
    // transaction started with it) and claims as usual.
    const { rows } = await clients[0]!.query<{ own: boolean }>(
      `SELECT xact_start = query_start AS own FROM pg_catalog.pg_stat_activity
        WHERE pid = pg_catalog.pg_backend_pid()`,
    );
    expect(rows).toEqual([{ own: true }]);
    expect((await drain(clients[0]!, 'after-warming')).map((item) => item.outboxId)).toEqual(ids);
  });
});
