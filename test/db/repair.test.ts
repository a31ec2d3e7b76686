import { describe, expect, it } from 'vitest';
import {
  claimOutboxBatch,
  completeOutboxAttempt,
  enqueuePaymentOutbox,
  repairExpiredLeases,
} from '../../src/db/outbox.ts';
import {
  enqueueAndClaim,
  enqueueItems,
  expireLeases,
  outboxTestBed,
  readAttempts,
  readPending,
  secondsBetween,
  seedPriorAttempts,
  setRetryCeiling,
  DEFAULT_RETRY_CEILING,
} from '../support/outbox-fixtures.ts';
import { expectSqlState } from '../support/sqlstate.ts';

const { db, clients } = await outboxTestBed({ connections: 4, emptyQueueBeforeEach: true });

describe('repair_expired_leases', () => {
  it('INV-REPAIR-EXPIRED-ONLY: only expired leases are requeued, each with one ZOMBIE_REQUEUE attempt', async () => {
    const [live, expired] = await enqueueAndClaim(db.owner, 2, {
      workerId: 'crashed',
      leaseSeconds: 300,
    });
    const [unleased] = await enqueueItems(db.owner, 1);
    if (!live || !expired || !unleased) throw new Error('fixture produced too few items');
    await expireLeases(db.owner, [expired.outboxId]);

    const repaired = await repairExpiredLeases(db.owner, { batchSize: 100, workerId: 'repairer' });

    expect(repaired).toEqual([{ outboxId: expired.outboxId, attemptNo: 1 }]);
    const [attempt, ...more] = await readAttempts(db.owner, [
      live.outboxId,
      expired.outboxId,
      unleased,
    ]);
    expect(more).toEqual([]);
    expect(attempt).toMatchObject({
      outbox_id: expired.outboxId,
      attempt_no: 1,
      state: 'ZOMBIE_REQUEUE',
      worker_id: 'repairer',
    });
    const requeued = await readPending(db.owner, expired.outboxId);
    expect(requeued).toMatchObject({
      claimed_by: null,
      lease_token: null,
      lease_expires_at: null,
      attempt_count: 1,
    });
    expect(
      secondsBetween(
        attempt?.claimed_at ?? new Date(NaN),
        requeued?.next_attempt_at ?? new Date(NaN),
      ),
    ).toBe(1);
    expect(await readPending(db.owner, live.outboxId)).toMatchObject({
      claimed_by: 'crashed',
      lease_token: live.leaseToken,
    });
    expect(await readPending(db.owner, unleased)).toMatchObject({
      lease_token: null,
      attempt_count: 0,
    });
  });

  it('INV-REPAIR-FENCES-ZOMBIE: the crashed worker cannot complete a repaired item (P7002)', async () => {
    const [item] = await enqueueAndClaim(db.owner, 1, { workerId: 'zombie' });
    if (!item) throw new Error('fixture claimed nothing');
    await expireLeases(db.owner, [item.outboxId]);
    await repairExpiredLeases(db.owner, { batchSize: 10, workerId: 'repairer' });
    await expectSqlState(
      completeOutboxAttempt(db.owner, 'zombie', {
        outboxId: item.outboxId,
        leaseToken: item.leaseToken,
        state: 'DISPATCHED',
      }),
      'P7002',
    );
  });

  it('INV-REPAIR-NO-DOUBLE: 4 repairers running at once in open transactions never repair the same row twice', async () => {
    const items = await enqueueAndClaim(db.owner, 200, { workerId: 'crashed' });
    await expireLeases(
      db.owner,
      items.map((item) => item.outboxId),
    );

    await Promise.all(clients.map((client) => client.query('BEGIN')));
    let results: Awaited<ReturnType<typeof repairExpiredLeases>>[];
    try {
      // Every call returns while all four transactions still hold their row locks.
      results = await Promise.all(
        clients.map((client, index) =>
          repairExpiredLeases(client, { batchSize: 60, workerId: `repairer-${index}` }),
        ),
      );
    } finally {
      await Promise.all(clients.map((client) => client.query('COMMIT')));
    }

    const repairedIds = results.flat().map((item) => item.outboxId);
    expect(repairedIds).toHaveLength(200);
    expect(new Set(repairedIds).size).toBe(200);
    const attempts = await readAttempts(
      db.owner,
      items.map((item) => item.outboxId),
    );
    expect(attempts).toHaveLength(200);
    expect(
      attempts.every((attempt) => attempt.attempt_no === 1 && attempt.state === 'ZOMBIE_REQUEUE'),
    ).toBe(true);
    expect(await repairExpiredLeases(db.owner, { batchSize: 1000, workerId: 'late' })).toEqual([]);
  });

  it('INV-REPAIR-RETRY-CEILING: a zombie requeue reaching the ceiling ends the item FAILED with RETRY_CEILING', async () => {
    const session = clients[0];
    if (!session) throw new Error('no client');
    await setRetryCeiling(db.owner, 3);
    try {
      const [item] = await enqueueAndClaim(db.owner, 1, { workerId: 'crashed' });
      if (!item) throw new Error('fixture claimed nothing');
      await seedPriorAttempts(db.owner, item.outboxId, 2);
      await expireLeases(db.owner, [item.outboxId]);

      expect(await repairExpiredLeases(session, { batchSize: 10, workerId: 'repairer' })).toEqual([
        { outboxId: item.outboxId, attemptNo: 3 },
      ]);
      expect(await readPending(db.owner, item.outboxId)).toBeUndefined();
      expect((await readAttempts(db.owner, [item.outboxId])).at(-1)).toMatchObject({
        attempt_no: 3,
        state: 'FAILED',
        error_code: 'RETRY_CEILING',
      });
      const [again] = await claimOutboxBatch(db.owner, {
        batchSize: 10,
        workerId: 'w',
        leaseSeconds: 30,
        railTypes: ['sandbox'],
      });
      expect(again).toBeUndefined();
    } finally {
      await setRetryCeiling(db.owner, DEFAULT_RETRY_CEILING);
    }
  });

  it('INV-REPAIR-RETRY-CEILING: re-enqueueing an item failed at the ceiling by repair reports FAILED', async () => {
    const session = clients[1];
    if (!session) throw new Error('no client');
    await setRetryCeiling(db.owner, 1);
    try {
      const request = {
        instructionId: 'ceiling-instruction',
        participantId: 'ceiling-participant',
        idempotencyKey: 'ceiling-key',
        railType: 'sandbox',
        payload: { a: 1 },
      };
      const first = await enqueuePaymentOutbox(db.owner, request);
      await claimOutboxBatch(db.owner, {
        batchSize: 10,
        workerId: 'crashed',
        leaseSeconds: 30,
        railTypes: ['sandbox'],
      });
      await expireLeases(db.owner, [first.outboxId]);
      await repairExpiredLeases(session, { batchSize: 10, workerId: 'repairer' });
      expect(await enqueuePaymentOutbox(db.owner, request)).toMatchObject({
        outboxId: first.outboxId,
        state: 'FAILED',
      });
    } finally {
      await setRetryCeiling(db.owner, DEFAULT_RETRY_CEILING);
    }
  });

  it("INV-LIMITS-NOT-SESSION: an executor session's symphony.outbox_retry_ceiling = '1' does not fail a repaired item", async () => {
    const session = clients[2];
    if (!session) throw new Error('no client');
    const [item] = await enqueueAndClaim(db.owner, 1, { workerId: 'crashed' });
    if (!item) throw new Error('fixture claimed nothing');
    await expireLeases(db.owner, [item.outboxId]);
    await session.query(`SET symphony.outbox_retry_ceiling = '1'`);
    try {
      expect(await repairExpiredLeases(session, { batchSize: 10, workerId: 'repairer' })).toEqual([
        { outboxId: item.outboxId, attemptNo: 1 },
      ]);
    } finally {
      await session.query('RESET symphony.outbox_retry_ceiling');
    }
    expect((await readAttempts(db.owner, [item.outboxId])).map((row) => row.state)).toEqual([
      'ZOMBIE_REQUEUE',
    ]);
    expect(await readPending(db.owner, item.outboxId)).toMatchObject({ claimed_by: null });
  });

  it('refuses a non-positive batch size with 22023', async () => {
    await expectSqlState(
      repairExpiredLeases(db.owner, { batchSize: 0, workerId: 'repairer' }),
      '22023',
    );
  });
});
