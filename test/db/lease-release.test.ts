import { describe, expect, it } from 'vitest';
import { claimOutboxBatch, releaseOutboxLeases } from '../../src/db/outbox.ts';
import {
  enqueueAndClaim,
  expireLeases,
  outboxTestBed,
  readAttempts,
  readPending,
} from '../support/outbox-fixtures.ts';
import { connectAs } from '../support/role-boundaries.ts';
import { expectSqlState } from '../support/sqlstate.ts';

const { db } = await outboxTestBed({ emptyQueueBeforeEach: true });
const WORKER = 'leaving-worker';
const executor = await connectAs(db, 'symphony_executor');
const ingest = await connectAs(db, 'symphony_ingest');

describe('release_outbox_leases', () => {
  it('INV-RELEASE-FENCED: releases only rows leased to this worker with the given token, and appends no attempt', async () => {
    const [first, second, wrongToken, otherWorker] = await enqueueAndClaim(db.owner, 4, {
      workerId: WORKER,
    });
    if (!first || !second || !wrongToken || !otherWorker)
      throw new Error('fixture claimed too few');
    const [stolen] = await enqueueAndClaim(db.owner, 1, { workerId: 'someone-else' });
    if (!stolen) throw new Error('fixture claimed nothing');

    const released = await releaseOutboxLeases(executor, WORKER, [
      first,
      second,
      { outboxId: wrongToken.outboxId, leaseToken: stolen.leaseToken },
      stolen,
    ]);

    expect(new Set(released)).toEqual(new Set([first.outboxId, second.outboxId]));
    for (const item of [first, second]) {
      expect(await readPending(db.owner, item.outboxId)).toMatchObject({
        claimed_by: null,
        lease_token: null,
        lease_expires_at: null,
        attempt_count: 0,
      });
    }
    expect(await readPending(db.owner, wrongToken.outboxId)).toMatchObject({
      lease_token: wrongToken.leaseToken,
    });
    expect(await readPending(db.owner, stolen.outboxId)).toMatchObject({
      claimed_by: 'someone-else',
    });
    expect(
      await readAttempts(
        db.owner,
        [first, second, wrongToken, stolen].map((item) => item.outboxId),
      ),
    ).toEqual([]);

    // Released items are due at once, for any worker.
    const reclaimed = await claimOutboxBatch(db.owner, {
      batchSize: 10,
      workerId: 'next',
      leaseSeconds: 30,
      railTypes: ['sandbox'],
    });
    expect(new Set(reclaimed.map((item) => item.outboxId))).toEqual(
      new Set([first.outboxId, second.outboxId]),
    );
  });

  it('an expired lease is not released (it belongs to repair now)', async () => {
    const [item] = await enqueueAndClaim(db.owner, 1, { workerId: WORKER });
    if (!item) throw new Error('fixture claimed nothing');
    await expireLeases(db.owner, [item.outboxId]);
    expect(await releaseOutboxLeases(executor, WORKER, [item])).toEqual([]);
    expect(await readPending(db.owner, item.outboxId)).toMatchObject({
      lease_token: item.leaseToken,
    });
  });

  it('mismatched id and token arrays are refused with 22023', async () => {
    await expectSqlState(
      executor.query('SELECT * FROM public.release_outbox_leases($1, $2::uuid[], $3::uuid[])', [
        WORKER,
        ['00000000-0000-7000-8000-000000000001'],
        [],
      ]),
      '22023',
    );
  });

  it('an empty release returns nothing', async () => {
    expect(await releaseOutboxLeases(executor, WORKER, [])).toEqual([]);
  });

  it('symphony_ingest may not release leases (42501)', async () => {
    await expectSqlState(
      ingest.query(`SELECT * FROM public.release_outbox_leases('w', '{}'::uuid[], '{}'::uuid[])`),
      '42501',
    );
  });
});
