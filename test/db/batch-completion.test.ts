import { describe, expect, it } from 'vitest';
import {
  claimOutboxBatch,
  completeOutboxAttempt,
  completeOutboxBatch,
  repairExpiredLeases,
  warmUpCompletions,
  type ClaimedItem,
  type Completion,
  type CompletionState,
} from '../../src/db/outbox.ts';
import { backendPid, waitUntilBlockedOnLock } from '../support/lock-waits.ts';
import { waitUntil } from '../support/processes.ts';
import {
  enqueueAndClaim,
  expireLeases,
  makeDue,
  outboxTestBed,
  queueBulk,
  readAttempts,
  readPending,
  secondsBetween,
  seedPriorAttempts,
  setRetryCeiling,
  DEFAULT_RETRY_CEILING,
} from '../support/outbox-fixtures.ts';
import { connectAsEach, RUNTIME_ROLES } from '../support/role-boundaries.ts';
import { expectSqlState } from '../support/sqlstate.ts';
import { completionPlans, nestedPlans, readsWhole } from '../support/statement-plans.ts';

const { db, client } = await outboxTestBed({ connections: 4, emptyQueueBeforeEach: true });
const WORKER = 'batcher';
const NO_TOKEN = '00000000-0000-7000-8000-000000000000';
const roles = RUNTIME_ROLES.filter((role) => role !== 'symphony_executor');
const as = await connectAsEach(db, RUNTIME_ROLES);

function dispatched(item: ClaimedItem, overrides: Partial<Completion> = {}): Completion {
  return {
    outboxId: item.outboxId,
    leaseToken: item.leaseToken,
    state: 'DISPATCHED',
    railReference: `ref-${item.outboxId}`,
    latencyMs: 7,
    ...overrides,
  };
}

/** Every attempt column a completion writes, minus ids and timestamps. */
async function ledgerOf(outboxIds: readonly string[]) {
  const { rows } = await db.owner.query<Record<string, unknown>>(
    `SELECT a.outbox_id, a.attempt_no, a.state::text AS state, a.rail_reference, a.rail_code,
            a.error_code, a.error_message, a.latency_ms, a.worker_id,
            a.completed_at IS NOT NULL AS completed
       FROM public.payment_outbox_attempts a
      WHERE a.outbox_id = ANY($1::uuid[])
      ORDER BY a.outbox_id, a.attempt_no`,
    [outboxIds],
  );
  return rows;
}

describe('complete_outbox_batch', () => {
  it('INV-BATCH-COMPLETE-STATE: an invalid state in any element refuses the whole call with P7003 and records nothing', async () => {
    const items = await enqueueAndClaim(db.owner, 3, { workerId: WORKER });
    for (const invalid of ['ZOMBIE_REQUEUE', 'DISPATCHING', 'BOGUS']) {
      const completions = items.map((item, index) =>
        index === 1 ? dispatched(item, { state: invalid as CompletionState }) : dispatched(item),
      );
      await expectSqlState(completeOutboxBatch(db.owner, WORKER, completions), 'P7003');
    }
    // A missing state counts as invalid too, not as a default.
    await expectSqlState(
      db.owner.query(`SELECT * FROM public.complete_outbox_batch($1, $2::jsonb)`, [
        WORKER,
        JSON.stringify([{ outbox_id: items[0]?.outboxId, lease_token: items[0]?.leaseToken }]),
      ]),
      'P7003',
    );
    expect(
      await readAttempts(
        db.owner,
        items.map((item) => item.outboxId),
      ),
    ).toEqual([]);
    for (const item of items) {
      expect(await readPending(db.owner, item.outboxId)).toMatchObject({
        claimed_by: WORKER,
        lease_token: item.leaseToken,
      });
    }
  });

  it('INV-BATCH-COMPLETE-LEASE-FENCED: elements with a wrong token, another worker or an expired lease are reported lease_lost and write nothing; the rest are recorded', async () => {
    const [live, wrongToken, wrongWorker, expired] = await enqueueAndClaim(db.owner, 4, {
      workerId: WORKER,
    });
    if (!live || !wrongToken || !wrongWorker || !expired) throw new Error('fixture');
    await expireLeases(db.owner, [expired.outboxId]);

    const results = await completeOutboxBatch(db.owner, WORKER, [
      dispatched(live),
      dispatched(wrongToken, { leaseToken: NO_TOKEN }),
      dispatched(expired),
    ]);
    const intruder = await completeOutboxBatch(db.owner, 'intruder', [dispatched(wrongWorker)]);

    expect(results).toEqual([
      { outboxId: live.outboxId, attemptNo: 1, state: 'DISPATCHED', leaseLost: false },
      { outboxId: wrongToken.outboxId, attemptNo: null, state: null, leaseLost: true },
      { outboxId: expired.outboxId, attemptNo: null, state: null, leaseLost: true },
    ]);
    expect(intruder).toEqual([
      { outboxId: wrongWorker.outboxId, attemptNo: null, state: null, leaseLost: true },
    ]);
    expect(
      (await readAttempts(db.owner, [live.outboxId, wrongToken.outboxId, wrongWorker.outboxId]))
        .length,
    ).toBe(1);
    expect(await readAttempts(db.owner, [expired.outboxId])).toEqual([]);
    expect(await readPending(db.owner, live.outboxId)).toBeUndefined();
    for (const untouched of [wrongToken, wrongWorker]) {
      expect(await readPending(db.owner, untouched.outboxId)).toMatchObject({
        claimed_by: WORKER,
        lease_token: untouched.leaseToken,
      });
    }
  });

  it('INV-BATCH-COMPLETE-SAME-AS-SINGLE: a batch writes the same attempt rows and pending state as one complete_outbox_attempt per item, retry ceiling included', async () => {
    const session = client(0);
    await setRetryCeiling(db.owner, 4);
    try {
      // [prior attempts, requested outcome]: the ceiling turns attempt 4 RETRYABLE into FAILED.
      const cases: [number, Partial<Completion>][] = [
        [0, { state: 'DISPATCHED', railReference: 'rail-1', railCode: '200', latencyMs: 12 }],
        [1, { state: 'FAILED', errorCode: 'REJECTED', errorMessage: 'no such account' }],
        [0, { state: 'RETRYABLE', errorCode: 'HTTP_503', retryDelaySeconds: 7, latencyMs: 3 }],
        [2, { state: 'RETRYABLE', errorCode: 'TIMEOUT', retryDelaySeconds: 0 }],
        [3, { state: 'RETRYABLE', errorCode: 'HTTP_503', retryDelaySeconds: 30 }],
        [3, { state: 'RETRYABLE', errorCode: null, retryDelaySeconds: 30 }],
      ];
      const prepare = async (label: string) => {
        const items = await enqueueAndClaim(session, cases.length, {
          workerId: WORKER,
          prefix: label,
        });
        for (const [index, [prior]] of cases.entries()) {
          if (prior > 0) await seedPriorAttempts(db.owner, items[index]!.outboxId, prior);
        }
        return items.map((item, index) => ({
          item,
          completion: {
            outboxId: item.outboxId,
            leaseToken: item.leaseToken,
            state: 'DISPATCHED' as CompletionState,
            ...cases[index]![1],
          },
        }));
      };
      const single = await prepare('single');
      const batch = await prepare('batch');

      const singleResults = [];
      for (const { completion } of single) {
        singleResults.push(await completeOutboxAttempt(session, WORKER, completion));
      }
      const batchResults = await completeOutboxBatch(
        session,
        WORKER,
        batch.map(({ completion }) => completion),
      );

      expect(batchResults.map(({ attemptNo, state }) => ({ attemptNo, state }))).toEqual(
        singleResults,
      );
      expect(singleResults.map((result) => result.state)).toEqual([
        'DISPATCHED',
        'FAILED',
        'RETRYABLE',
        'RETRYABLE',
        'FAILED',
        'FAILED',
      ]);
      // Same rows apart from the outbox ids, which differ by construction.
      const comparable = async (ids: string[]) =>
        (await ledgerOf(ids)).map((row) => ({
          ...row,
          outbox_id: ids.indexOf(row.outbox_id as string),
        }));
      const singleIds = single.map(({ item }) => item.outboxId);
      const batchIds = batch.map(({ item }) => item.outboxId);
      expect(await comparable(batchIds)).toEqual(await comparable(singleIds));
      expect((await ledgerOf(batchIds)).at(-1)).toMatchObject({ error_code: 'RETRY_CEILING' });

      for (const [index, id] of singleIds.entries()) {
        const pendingSingle = await readPending(db.owner, id);
        const pendingBatch = await readPending(db.owner, batchIds[index]!);
        expect(pendingBatch === undefined).toBe(pendingSingle === undefined);
        if (!pendingSingle || !pendingBatch) continue;
        const delayOf = async (pending: typeof pendingSingle) => {
          const attempts = await readAttempts(db.owner, [pending.outbox_id]);
          return secondsBetween(attempts.at(-1)!.claimed_at, pending.next_attempt_at);
        };
        expect(pendingBatch).toMatchObject({
          attempt_count: pendingSingle.attempt_count,
          claimed_by: null,
          lease_token: null,
          lease_expires_at: null,
        });
        expect(await delayOf(pendingBatch)).toBe(await delayOf(pendingSingle));
      }
    } finally {
      await setRetryCeiling(db.owner, DEFAULT_RETRY_CEILING);
    }
  });

  it('INV-BATCH-COMPLETE-CEILING: RETRYABLE at the retry ceiling is recorded FAILED (RETRY_CEILING) and leaves the queue; below it the lease is cleared and the item rescheduled', async () => {
    const session = client(1);
    await setRetryCeiling(db.owner, 3);
    try {
      const [atCeiling, below] = await enqueueAndClaim(session, 2, { workerId: WORKER });
      if (!atCeiling || !below) throw new Error('fixture');
      await seedPriorAttempts(db.owner, atCeiling.outboxId, 2);
      await seedPriorAttempts(db.owner, below.outboxId, 1);

      const results = await completeOutboxBatch(session, WORKER, [
        { outboxId: atCeiling.outboxId, leaseToken: atCeiling.leaseToken, state: 'RETRYABLE' },
        {
          outboxId: below.outboxId,
          leaseToken: below.leaseToken,
          state: 'RETRYABLE',
          errorCode: 'HTTP_503',
          retryDelaySeconds: 9,
        },
      ]);

      expect(results).toEqual([
        { outboxId: atCeiling.outboxId, attemptNo: 3, state: 'FAILED', leaseLost: false },
        { outboxId: below.outboxId, attemptNo: 2, state: 'RETRYABLE', leaseLost: false },
      ]);
      expect((await readAttempts(db.owner, [atCeiling.outboxId])).at(-1)).toMatchObject({
        attempt_no: 3,
        state: 'FAILED',
        error_code: 'RETRY_CEILING',
      });
      expect(await readPending(db.owner, atCeiling.outboxId)).toBeUndefined();
      const pending = await readPending(db.owner, below.outboxId);
      expect(pending).toMatchObject({
        attempt_count: 2,
        claimed_by: null,
        lease_token: null,
        lease_expires_at: null,
      });
      const [, recorded] = await readAttempts(db.owner, [below.outboxId]);
      expect(secondsBetween(recorded!.claimed_at, pending!.next_attempt_at)).toBe(9);
    } finally {
      await setRetryCeiling(db.owner, DEFAULT_RETRY_CEILING);
    }
  });

  it('records the first of two elements for one item and reports the second lease_lost, as two single calls would', async () => {
    const [item] = await enqueueAndClaim(db.owner, 1, { workerId: WORKER });
    if (!item) throw new Error('fixture');
    const results = await completeOutboxBatch(db.owner, WORKER, [
      dispatched(item, { leaseToken: NO_TOKEN }),
      { outboxId: item.outboxId, leaseToken: item.leaseToken, state: 'FAILED', errorCode: 'X' },
      dispatched(item),
    ]);
    expect(results.map((result) => [result.state, result.leaseLost])).toEqual([
      [null, true],
      ['FAILED', false],
      [null, true],
    ]);
    expect((await readAttempts(db.owner, [item.outboxId])).map((a) => a.state)).toEqual(['FAILED']);
  });

  it('refuses a p_outcomes that is not an array of objects with an outbox_id with 22023', async () => {
    for (const outcomes of ['{}', '"x"', '[1]', '[{"state":"DISPATCHED"}]']) {
      await expectSqlState(
        db.owner.query(`SELECT * FROM public.complete_outbox_batch('w', $1::jsonb)`, [outcomes]),
        '22023',
      );
    }
    expect(await completeOutboxBatch(db.owner, WORKER, [])).toEqual([]);
  });

  describe('concurrency', () => {
    it('INV-BATCH-COMPLETE-LIVE-HOLDER-ONLY: two workers completing overlapping batches at once, one holding stale tokens: only the live holder records each item, the stale ones come back lease_lost', async () => {
      const claimedByA = await enqueueAndClaim(db.owner, 10, { workerId: 'worker-a' });
      const lost = claimedByA.slice(0, 5);
      const kept = claimedByA.slice(5);
      // worker-a stalls past its lease on half the items; repair requeues them and B takes them.
      await expireLeases(
        db.owner,
        lost.map((item) => item.outboxId),
      );
      await repairExpiredLeases(db.owner, { batchSize: 100, workerId: 'repairer' });
      await makeDue(
        db.owner,
        lost.map((item) => item.outboxId),
      );
      const claimedByB = await claimOutboxBatch(db.owner, {
        batchSize: 100,
        workerId: 'worker-b',
        leaseSeconds: 60,
        railTypes: ['sandbox'],
      });
      expect(claimedByB.map((item) => item.outboxId).sort()).toEqual(
        lost.map((item) => item.outboxId).sort(),
      );

      // Staged, not raced: worker-a's batch runs first and stays uncommitted while
      // worker-b's runs, so the stale tokens really meet the fence (had worker-b committed
      // first, a's stale items would simply be gone). b must not wait for a: a holds no
      // lock on the items it lost.
      await client(0).query('BEGIN');
      const resultsA = await completeOutboxBatch(
        client(0),
        'worker-a',
        claimedByA.map((item) => dispatched(item)),
      );
      const pidB = await backendPid(client(1));
      let finishedB = false;
      const completingB = completeOutboxBatch(
        client(1),
        'worker-b',
        claimedByB.map((item) => dispatched(item)),
      ).finally(() => (finishedB = true));
      // Were a's fence broken, b would wait for a's locks: commit a then, rather than hang.
      await waitUntil(
        async () => {
          if (finishedB) return true;
          const { rows } = await db.owner.query(
            "SELECT 1 FROM pg_catalog.pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
            [pidB],
          );
          return rows.length > 0 ? true : undefined;
        },
        {
          description: "worker-b's batch to finish or wait on a lock",
          attempts: 400,
          intervalMs: 25,
        },
      );
      await client(0).query('COMMIT');
      const resultsB = await completingB;

      expect(
        resultsA.filter((result) => result.leaseLost).map((result) => result.outboxId),
      ).toEqual(lost.map((item) => item.outboxId));
      expect(resultsA.filter((result) => !result.leaseLost).map((r) => r.outboxId)).toEqual(
        kept.map((item) => item.outboxId),
      );
      expect(resultsB.every((result) => !result.leaseLost && result.state === 'DISPATCHED')).toBe(
        true,
      );
      const attempts = await readAttempts(
        db.owner,
        claimedByA.map((item) => item.outboxId),
      );
      const terminal = attempts.filter((attempt) => attempt.state === 'DISPATCHED');
      expect(terminal).toHaveLength(10);
      for (const attempt of terminal) {
        const holder = kept.some((item) => item.outboxId === attempt.outbox_id)
          ? 'worker-a'
          : 'worker-b';
        expect(attempt).toMatchObject({ worker_id: holder });
      }
    });

    it('INV-BATCH-COMPLETE-RECHECK-AFTER-WAIT: a batch that waited for a row lock re-checks the lease after the wait: the item completed meanwhile is lease_lost, the others are recorded once', async () => {
      const [contested, other] = await enqueueAndClaim(db.owner, 2, { workerId: WORKER });
      if (!contested || !other) throw new Error('fixture');
      const first = client(0);
      const second = client(1);
      let firstResults: Awaited<ReturnType<typeof completeOutboxBatch>>;
      let secondCall: ReturnType<typeof completeOutboxBatch> | undefined;
      const secondPid = await backendPid(second);
      await first.query('BEGIN');
      try {
        firstResults = await completeOutboxBatch(first, WORKER, [dispatched(contested)]);
        // The same outcomes again (e.g. a completion retried after a timeout) on another
        // connection, while the first transaction still holds the contested row.
        secondCall = completeOutboxBatch(second, WORKER, [
          dispatched(other),
          dispatched(contested),
        ]);
        await waitUntilBlockedOnLock(db.owner, secondPid);
      } finally {
        await first.query('COMMIT');
      }
      const secondResults = await secondCall;

      expect(firstResults).toEqual([
        { outboxId: contested.outboxId, attemptNo: 1, state: 'DISPATCHED', leaseLost: false },
      ]);
      expect(secondResults).toEqual([
        { outboxId: other.outboxId, attemptNo: 1, state: 'DISPATCHED', leaseLost: false },
        { outboxId: contested.outboxId, attemptNo: null, state: null, leaseLost: true },
      ]);
      expect(await readAttempts(db.owner, [contested.outboxId])).toHaveLength(1);
    });

    it('INV-BATCH-COMPLETE-EXACTLY-ONCE: 4 connections completing the same 200 items in different orders record each item exactly once, without deadlock', async () => {
      const items = await enqueueAndClaim(db.owner, 200, { workerId: WORKER });
      const orders = [
        items,
        [...items].reverse(),
        items.filter((_, i) => i % 2 === 0).concat(items.filter((_, i) => i % 2 === 1)),
        items.filter((_, i) => i % 2 === 1).concat(items.filter((_, i) => i % 2 === 0).reverse()),
      ];
      const perConnection = await Promise.all(
        orders.map((order, index) =>
          completeOutboxBatch(
            client(index),
            WORKER,
            order.map((item) => dispatched(item)),
          ),
        ),
      );
      const recorded = perConnection.flat().filter((result) => !result.leaseLost);
      expect(recorded).toHaveLength(200);
      expect(new Set(recorded.map((result) => result.outboxId)).size).toBe(200);
      const attempts = await readAttempts(
        db.owner,
        items.map((item) => item.outboxId),
      );
      expect(attempts).toHaveLength(200);
      expect(attempts.every((attempt) => attempt.attempt_no === 1)).toBe(true);
    });
  });

  describe('plans', () => {
    it('INV-BATCH-COMPLETE-PLAN-ON-INDEXES: with 20k rows queued, the fence of a batch of 256 outcomes finds its rows by primary key, custom and generic plans alike, and no statement of the completion reads the queue whole (auto_explain of the nested statements)', async () => {
      await queueBulk(db.owner, 20_000, { railType: 'sandbox', secondsFromNow: -60 });
      await db.owner.query('ANALYZE public.payment_outbox_pending, public.payment_outbox_items');
      const batches: Completion[][] = [];
      for (let batch = 0; batch < 6; batch += 1) {
        const items = await claimOutboxBatch(db.owner, {
          batchSize: 256,
          workerId: WORKER,
          leaseSeconds: 60,
          railTypes: ['sandbox'],
        });
        batches.push(items.map((item) => dispatched(item)));
      }
      const { plans, recorded } = await completionPlans(client(0), WORKER, batches);
      expect(recorded).toEqual([256, 256, 256, 256, 256, 256]);
      const nested = nestedPlans(plans, 'complete_outbox_batch');
      const fences = nested.filter((plan) => plan.includes('array_agg(l.drive_attempt_base)'));
      expect(fences).toHaveLength(6);
      expect(
        fences.filter((plan) => !plan.includes('"Index Name": "payment_outbox_pending_pkey"')),
      ).toEqual([]);
      expect(nested.filter(readsWhole)).toEqual([]);
    });
  });

  describe('privileges', () => {
    it('INV-PRIV-BATCH-COMPLETE-EXECUTOR-ONLY: only the executor may call complete_outbox_batch; ingest and every other runtime role get 42501', async () => {
      const [item] = await enqueueAndClaim(db.owner, 1, { workerId: WORKER });
      if (!item) throw new Error('fixture');
      for (const role of roles) {
        await expectSqlState(completeOutboxBatch(as[role], WORKER, [dispatched(item)]), '42501');
      }
      expect(await readAttempts(db.owner, [item.outboxId])).toEqual([]);
      expect(
        await completeOutboxBatch(as.symphony_executor, WORKER, [dispatched(item)]),
      ).toMatchObject([{ state: 'DISPATCHED', leaseLost: false }]);
    });
  });
});

describe('warmUpCompletions (a new completion connection of a worker, at start)', () => {
  it('records nothing and fences nothing, and leaves the connection ready to record', async () => {
    const [item] = await enqueueAndClaim(client(0), 1, { workerId: WORKER });
    const before = await readPending(db.owner, item!.outboxId);
    await warmUpCompletions(client(1), { workerId: WORKER });
    expect(await readPending(db.owner, item!.outboxId)).toEqual(before);
    expect(await readAttempts(db.owner, [item!.outboxId])).toEqual([]);
    // Rolled back: the next statement runs in a transaction of its own and records as usual.
    const { rows } = await client(1).query<{ own: boolean }>(
      `SELECT xact_start = query_start AS own FROM pg_catalog.pg_stat_activity
        WHERE pid = pg_catalog.pg_backend_pid()`,
    );
    expect(rows).toEqual([{ own: true }]);
    expect(await completeOutboxBatch(client(1), WORKER, [dispatched(item!)])).toMatchObject([
      { state: 'DISPATCHED', leaseLost: false },
    ]);
  });
});
