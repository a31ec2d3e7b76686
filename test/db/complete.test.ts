import { describe, expect, it } from 'vitest';
import { LeaseLostError } from '../../src/db/errors.ts';
import { claimOutboxBatch, completeOutboxAttempt, type ClaimedItem } from '../../src/db/outbox.ts';
import {
  enqueueAndClaim,
  expireLeases,
  makeDue,
  outboxTestBed,
  readAttempts,
  readPending,
  secondsBetween,
  seedPriorAttempts,
  setRetryCeiling,
  DEFAULT_RETRY_CEILING,
} from '../support/outbox-fixtures.ts';
import { expectSqlState } from '../support/sqlstate.ts';

const { db, client } = await outboxTestBed({ connections: 1, emptyQueueBeforeEach: true });
const WORKER = 'completer';
/** A dedicated connection whose session settings tests may change. */
const session = client(0);

async function claimOne(): Promise<ClaimedItem> {
  const [item] = await enqueueAndClaim(db.owner, 1, { workerId: WORKER });
  if (!item) throw new Error('fixture claimed nothing');
  return item;
}

/** Claims the given (due) item again for WORKER and returns its new lease. */
async function reclaim(outboxId: string): Promise<ClaimedItem> {
  await makeDue(db.owner, [outboxId]);
  const claimed = await claimOutboxBatch(db.owner, {
    batchSize: 1000,
    workerId: WORKER,
    leaseSeconds: 60,
    railTypes: ['sandbox'],
  });
  const item = claimed.find((candidate) => candidate.outboxId === outboxId);
  if (!item) throw new Error(`could not reclaim ${outboxId}`);
  return item;
}

describe('complete_outbox_attempt', () => {
  describe('lease fencing', () => {
    it.each([
      [
        'a wrong token',
        (item: ClaimedItem) => ({
          worker: WORKER,
          token: '00000000-0000-7000-8000-000000000000',
          item,
        }),
      ],
      [
        'a wrong worker',
        (item: ClaimedItem) => ({ worker: 'intruder', token: item.leaseToken, item }),
      ],
      [
        // A claim's items share one token (0036): a token is good only for its own claim.
        "the token of the same worker's other claim",
        (item: ClaimedItem, otherClaim: ClaimedItem) => ({
          worker: WORKER,
          token: otherClaim.leaseToken,
          item,
        }),
      ],
    ])(
      'INV-COMPLETE-LEASE-FENCED: completing with %s is refused with P7002 and writes nothing',
      async (_label, variant) => {
        const otherClaim = await claimOne();
        const { worker, token, item } = variant(await claimOne(), otherClaim);
        // Two claims, two tokens.
        expect(item.leaseToken).not.toBe(otherClaim.leaseToken);
        const error = await expectSqlState(
          completeOutboxAttempt(db.owner, worker, {
            outboxId: item.outboxId,
            leaseToken: token,
            state: 'DISPATCHED',
          }),
          'P7002',
        );
        expect(error).toBeInstanceOf(LeaseLostError);
        expect(await readAttempts(db.owner, [item.outboxId])).toEqual([]);
        expect(await readPending(db.owner, item.outboxId)).toMatchObject({
          lease_token: item.leaseToken,
        });
      },
    );

    it('INV-COMPLETE-LEASE-FENCED: completing after the lease expired is refused with P7002 and writes nothing', async () => {
      const item = await claimOne();
      await expireLeases(db.owner, [item.outboxId]);
      await expectSqlState(
        completeOutboxAttempt(db.owner, WORKER, {
          outboxId: item.outboxId,
          leaseToken: item.leaseToken,
          state: 'FAILED',
        }),
        'P7002',
      );
      expect(await readAttempts(db.owner, [item.outboxId])).toEqual([]);
    });

    it('INV-COMPLETE-ONCE: a second completion of a finished item is refused with P7002', async () => {
      const item = await claimOne();
      const completion = {
        outboxId: item.outboxId,
        leaseToken: item.leaseToken,
        state: 'DISPATCHED' as const,
      };
      await completeOutboxAttempt(db.owner, WORKER, completion);
      await expectSqlState(completeOutboxAttempt(db.owner, WORKER, completion), 'P7002');
      expect(await readAttempts(db.owner, [item.outboxId])).toHaveLength(1);
    });
  });

  it.each(['ZOMBIE_REQUEUE', 'DISPATCHING'])(
    'INV-COMPLETE-STATE-VALID: %s is refused with P7003 even under a valid lease, writing nothing',
    async (state) => {
      const item = await claimOne();
      await expectSqlState(
        db.owner.query(
          'SELECT * FROM public.complete_outbox_attempt($1, $2, $3, $4::public.outbox_attempt_state)',
          [item.outboxId, item.leaseToken, WORKER, state],
        ),
        'P7003',
      );
      expect(await readAttempts(db.owner, [item.outboxId])).toEqual([]);
      expect(await readPending(db.owner, item.outboxId)).toMatchObject({
        lease_token: item.leaseToken,
      });
    },
  );

  it('INV-COMPLETE-STATE-VALID: the state is checked before the lease, so an invalid state with a wrong token is P7003', async () => {
    const item = await claimOne();
    await expectSqlState(
      db.owner.query(
        `SELECT * FROM public.complete_outbox_attempt($1, uuidv7(), 'nobody', 'ZOMBIE_REQUEUE')`,
        [item.outboxId],
      ),
      'P7003',
    );
  });

  it.each(['DISPATCHED', 'FAILED'] as const)(
    'INV-COMPLETE-TERMINAL: %s deletes the pending row and appends exactly one attempt',
    async (state) => {
      const item = await claimOne();
      const result = await completeOutboxAttempt(db.owner, WORKER, {
        outboxId: item.outboxId,
        leaseToken: item.leaseToken,
        state,
        railReference: 'rail-ref-1',
        railCode: '00',
        errorCode: state === 'FAILED' ? 'RAIL_REJECTED' : null,
        latencyMs: 42,
      });
      expect(result).toEqual({ attemptNo: 1, state });
      expect(await readPending(db.owner, item.outboxId)).toBeUndefined();
      const attempts = await readAttempts(db.owner, [item.outboxId]);
      expect(attempts).toHaveLength(1);
      expect(attempts[0]).toMatchObject({
        attempt_no: 1,
        state,
        worker_id: WORKER,
        rail_reference: 'rail-ref-1',
        error_code: state === 'FAILED' ? 'RAIL_REJECTED' : null,
      });
      expect(attempts[0]?.completed_at).toBeInstanceOf(Date);
    },
  );

  it('INV-COMPLETE-RETRYABLE-RESCHEDULES: RETRYABLE clears the lease and reschedules after the delay', async () => {
    const item = await claimOne();
    const result = await completeOutboxAttempt(db.owner, WORKER, {
      outboxId: item.outboxId,
      leaseToken: item.leaseToken,
      state: 'RETRYABLE',
      errorCode: 'RAIL_TIMEOUT',
      retryDelaySeconds: 7,
    });
    expect(result).toEqual({ attemptNo: 1, state: 'RETRYABLE' });
    const pending = await readPending(db.owner, item.outboxId);
    expect(pending).toMatchObject({
      claimed_by: null,
      lease_token: null,
      lease_expires_at: null,
      attempt_count: 1,
    });
    const [attempt] = await readAttempts(db.owner, [item.outboxId]);
    expect(attempt).toMatchObject({
      state: 'RETRYABLE',
      completed_at: null,
      error_code: 'RAIL_TIMEOUT',
    });
    // Both timestamps are now() of the completing transaction, so the difference is exact.
    expect(
      secondsBetween(
        attempt?.claimed_at ?? new Date(NaN),
        pending?.next_attempt_at ?? new Date(NaN),
      ),
    ).toBe(7);
    // Not due yet: a claim does not return it.
    const claimed = await claimOutboxBatch(db.owner, {
      batchSize: 1000,
      workerId: WORKER,
      leaseSeconds: 60,
      railTypes: ['sandbox'],
    });
    expect(claimed.map((candidate) => candidate.outboxId)).not.toContain(item.outboxId);
  });

  it('a retry delay below one second is raised to one second', async () => {
    const item = await claimOne();
    await completeOutboxAttempt(db.owner, WORKER, {
      outboxId: item.outboxId,
      leaseToken: item.leaseToken,
      state: 'RETRYABLE',
      retryDelaySeconds: 0,
    });
    const pending = await readPending(db.owner, item.outboxId);
    const [attempt] = await readAttempts(db.owner, [item.outboxId]);
    expect(
      secondsBetween(
        attempt?.claimed_at ?? new Date(NaN),
        pending?.next_attempt_at ?? new Date(NaN),
      ),
    ).toBe(1);
  });

  it('INV-COMPLETE-RETRY-CEILING: by default attempt 19 may retry and attempt 20 becomes FAILED', async () => {
    const first = await claimOne();
    await seedPriorAttempts(db.owner, first.outboxId, 18);
    const nineteenth = await completeOutboxAttempt(db.owner, WORKER, {
      outboxId: first.outboxId,
      leaseToken: first.leaseToken,
      state: 'RETRYABLE',
    });
    expect(nineteenth).toEqual({ attemptNo: 19, state: 'RETRYABLE' });

    const again = await reclaim(first.outboxId);
    expect(again.attemptCount).toBe(19);
    const twentieth = await completeOutboxAttempt(db.owner, WORKER, {
      outboxId: again.outboxId,
      leaseToken: again.leaseToken,
      state: 'RETRYABLE',
      errorCode: 'RAIL_TIMEOUT',
    });
    expect(twentieth).toEqual({ attemptNo: 20, state: 'FAILED' });
    expect(await readPending(db.owner, first.outboxId)).toBeUndefined();
    const attempts = await readAttempts(db.owner, [first.outboxId]);
    expect(attempts.at(-1)).toMatchObject({
      attempt_no: 20,
      state: 'FAILED',
      error_code: 'RAIL_TIMEOUT',
    });
  });

  it('INV-COMPLETE-RETRY-CEILING: symphony.outbox_retry_ceiling = 3 makes attempt 3 FAILED (error_code RETRY_CEILING when none given)', async () => {
    await setRetryCeiling(db.owner, 3);
    try {
      const first = await claimOne();
      await seedPriorAttempts(db.owner, first.outboxId, 2);
      const result = await completeOutboxAttempt(session, WORKER, {
        outboxId: first.outboxId,
        leaseToken: first.leaseToken,
        state: 'RETRYABLE',
      });
      expect(result).toEqual({ attemptNo: 3, state: 'FAILED' });
      expect((await readAttempts(db.owner, [first.outboxId])).at(-1)).toMatchObject({
        state: 'FAILED',
        error_code: 'RETRY_CEILING',
      });
    } finally {
      await setRetryCeiling(db.owner, DEFAULT_RETRY_CEILING);
    }
  });

  it.each(['1', '1000', 'abc'])(
    "INV-LIMITS-NOT-SESSION: an executor session's symphony.outbox_retry_ceiling = %j changes nothing",
    async (value) => {
      await session.query(`SELECT set_config('symphony.outbox_retry_ceiling', $1, false)`, [value]);
      try {
        const { rows } = await session.query<{ ceiling: number }>(
          'SELECT public.outbox_retry_ceiling() AS ceiling',
        );
        expect(rows[0]?.ceiling).toBe(DEFAULT_RETRY_CEILING);
        const item = await claimOne();
        const result = await completeOutboxAttempt(session, WORKER, {
          outboxId: item.outboxId,
          leaseToken: item.leaseToken,
          state: 'RETRYABLE',
        });
        expect(result).toEqual({ attemptNo: 1, state: 'RETRYABLE' });
      } finally {
        await session.query('RESET symphony.outbox_retry_ceiling');
      }
    },
  );

  it('outbox_retry_ceiling() is outbox_limits.retry_ceiling, 20 by default', async () => {
    const { rows } = await session.query<{ ceiling: number }>(
      'SELECT public.outbox_retry_ceiling() AS ceiling',
    );
    expect(rows[0]?.ceiling).toBe(20);
  });

  it('INV-ATTEMPTS-ONE-TERMINAL: a second terminal attempt for one outbox_id is refused with 23505', async () => {
    const item = await claimOne();
    await completeOutboxAttempt(db.owner, WORKER, {
      outboxId: item.outboxId,
      leaseToken: item.leaseToken,
      state: 'DISPATCHED',
    });
    for (const state of ['DISPATCHED', 'FAILED']) {
      await expectSqlState(
        db.owner.query(
          `INSERT INTO public.payment_outbox_attempts (outbox_id, attempt_no, state)
           SELECT outbox_id, attempt_no + 1, $2::public.outbox_attempt_state
             FROM public.payment_outbox_attempts WHERE outbox_id = $1`,
          [item.outboxId, state],
        ),
        '23505',
      );
    }
  });
});
