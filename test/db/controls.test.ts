/**
 * Operator controls (0022, 0023): kill switches obeyed by every claim, and re-drive of a
 * FAILED item with the same key, once per failure, never after DISPATCHED.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  activePauses,
  listFailedItems,
  pauseDispatch,
  redriveOutboxItem,
  resumeDispatch,
} from '../../src/db/controls.ts';
import {
  claimOutboxBatch,
  completeOutboxAttempt,
  completeOutboxBatch,
  enqueuePaymentOutbox,
  repairExpiredLeases,
  type ClaimedItem,
} from '../../src/db/outbox.ts';
import {
  closeAll,
  connectMany,
  DEFAULT_RETRY_CEILING,
  enqueueItems,
  expireLeases,
  makeDue,
  outboxTestBed,
  readAttempts,
  setRetryCeiling,
  uniquePrefix,
} from '../support/outbox-fixtures.ts';
import { connectAsEach, RUNTIME_ROLES } from '../support/role-boundaries.ts';
import { expectSqlState } from '../support/sqlstate.ts';

const { db } = await outboxTestBed({ emptyQueueBeforeEach: true });
const as = await connectAsEach(db, RUNTIME_ROLES);
const control = as.symphony_control;
const WORKER = 'controls-test-worker';

afterEach(async () => {
  await db.owner.query('DELETE FROM public.outbox_pauses');
  await setRetryCeiling(db.owner, DEFAULT_RETRY_CEILING);
});

async function claimAll(railTypes = ['sandbox', 'other-rail'], workerId = WORKER) {
  return claimOutboxBatch(as.symphony_executor, {
    batchSize: 1000,
    workerId,
    leaseSeconds: 60,
    railTypes,
  });
}

async function complete(item: ClaimedItem, state: 'DISPATCHED' | 'FAILED' | 'RETRYABLE') {
  return completeOutboxAttempt(as.symphony_executor, WORKER, {
    outboxId: item.outboxId,
    leaseToken: item.leaseToken,
    state,
    errorCode: state === 'DISPATCHED' ? null : 'HTTP_422',
    railReference: state === 'DISPATCHED' ? 'ref' : null,
  });
}

/** One item enqueued, claimed and recorded FAILED; returns its claim. */
async function failedItem(prefix = uniquePrefix('failed')): Promise<ClaimedItem> {
  const [id] = await enqueueItems(db.owner, 1, { prefix });
  const item = (await claimAll()).find((claimed) => claimed.outboxId === id);
  if (!item) throw new Error('fixture: the new item was not claimed');
  await complete(item, 'FAILED');
  return item;
}

async function auditRows(action: string) {
  const { rows } = await db.owner.query<{
    target: string;
    reason: string;
    actor: string;
    details: Record<string, unknown>;
  }>(
    `SELECT target, reason, actor, details FROM public.outbox_control_audit
      WHERE action = $1 ORDER BY recorded_at, audit_id`,
    [action],
  );
  return rows;
}

async function pendingCount(outboxId: string): Promise<number> {
  const { rows } = await db.owner.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM public.payment_outbox_pending WHERE outbox_id = $1',
    [outboxId],
  );
  return rows[0]?.n ?? -1;
}

describe('kill switches', () => {
  it.each([
    { scope: 'all' as const, target: null, claimable: [] as string[] },
    { scope: 'rail' as const, target: 'sandbox', claimable: ['other-rail'] },
    { scope: 'participant' as const, target: 'participant', claimable: ['sandbox', 'other-rail'] },
  ])(
    'INV-PAUSE-NOT-CLAIMED: a $scope pause stops every claim of what it covers until resumed',
    async ({ scope, target: given, claimable }) => {
      // Participants are unique per test: sequence numbers of the item record never reset.
      const participant = uniquePrefix('pp-paused');
      const target = given === 'participant' ? participant : given;
      const paused = await enqueueItems(db.owner, 3, {
        prefix: uniquePrefix('p'),
        participants: [participant],
      });
      const sandbox = await enqueueItems(db.owner, 3, { prefix: uniquePrefix('s') });
      const other = await enqueueItems(db.owner, 3, {
        prefix: uniquePrefix('o'),
        railType: 'other-rail',
      });
      await pauseDispatch(control, { scope, target, reason: 'bank incident' });

      const claimed = await claimAll();
      const expected = [
        ...(claimable.includes('sandbox') ? sandbox : []),
        ...(claimable.includes('other-rail') ? other : []),
      ];
      expect(claimed.map((item) => item.outboxId).sort()).toEqual(expected.sort());

      await resumeDispatch(control, { scope, target, reason: 'bank is back' });
      const rest = await claimAll();
      const all = [...paused, ...sandbox, ...other];
      expect(rest.map((item) => item.outboxId).sort()).toEqual(
        all.filter((id) => !expected.includes(id)).sort(),
      );
    },
  );

  it('INV-PAUSE-NOT-CLAIMED: an item leased before the pause finishes and is recorded', async () => {
    await enqueueItems(db.owner, 1, { prefix: uniquePrefix('inflight') });
    const [item] = await claimAll();
    if (!item) throw new Error('fixture: nothing claimed');
    await pauseDispatch(control, { scope: 'all', target: null, reason: 'stop everything' });
    expect(await complete(item, 'DISPATCHED')).toMatchObject({ state: 'DISPATCHED' });
  });

  it('INV-CONTROL-PAUSE-AUDITED: control pauses and resumes; each change is audited with the login and reason, a repeat changes nothing', async () => {
    const login = await db.createLoginRole(['symphony_control'], { inherit: false });
    const client = await login.connect('symphony_control');
    try {
      const before = (await auditRows('pause')).length;
      const first = await pauseDispatch(client, {
        scope: 'rail',
        target: 'bank-x',
        reason: 'bank X returns 500s',
      });
      expect(first).toMatchObject({ changed: true, pausedBy: login.name, target: 'bank-x' });
      const again = await pauseDispatch(client, {
        scope: 'rail',
        target: 'bank-x',
        reason: 'second operator',
      });
      expect(again).toMatchObject({ changed: false, reason: 'bank X returns 500s' });
      expect(await activePauses(as.symphony_readonly)).toEqual([
        expect.objectContaining({ scope: 'rail', target: 'bank-x', pausedBy: login.name }),
      ]);
      const pauses = await auditRows('pause');
      expect(pauses.length).toBe(before + 1);
      expect(pauses.at(-1)).toMatchObject({
        target: 'rail:bank-x',
        reason: 'bank X returns 500s',
        actor: login.name,
      });

      expect(
        await resumeDispatch(client, { scope: 'rail', target: 'bank-x', reason: 'fixed' }),
      ).toMatchObject({ changed: true });
      expect(
        await resumeDispatch(client, { scope: 'rail', target: 'bank-x', reason: 'fixed' }),
      ).toMatchObject({ changed: false, pausedSince: null });
      expect((await auditRows('resume')).at(-1)).toMatchObject({
        target: 'rail:bank-x',
        reason: 'fixed',
        actor: login.name,
        details: expect.objectContaining({ pause_reason: 'bank X returns 500s' }),
      });
      expect(await activePauses(client)).toEqual([]);
    } finally {
      await client.end();
    }
  });

  it.each(RUNTIME_ROLES.filter((role) => role !== 'symphony_control'))(
    'INV-CONTROL-PAUSE-AUDITED: %s can neither pause, resume nor re-drive, nor write the control tables (42501)',
    async (role) => {
      const client = as[role];
      await expectSqlState(
        pauseDispatch(client, { scope: 'all', target: null, reason: 'x' }),
        '42501',
      );
      await expectSqlState(
        resumeDispatch(client, { scope: 'all', target: null, reason: 'x' }),
        '42501',
      );
      await expectSqlState(
        redriveOutboxItem(client, {
          outboxId: '00000000-0000-7000-8000-000000000000',
          reason: 'x',
        }),
        '42501',
      );
      await expectSqlState(
        client.query(
          "INSERT INTO public.outbox_pauses (scope, target, reason, paused_by) VALUES ('all', '*', 'x', 'x')",
        ),
        '42501',
      );
      await expectSqlState(client.query('DELETE FROM public.outbox_redrives'), '42501');
    },
  );

  it.each([
    ['an unknown scope', 'everything', null, 'r'],
    ['a target on scope all', 'all', 'sandbox', 'r'],
    ['a rail target that is no rail type', 'rail', 'bank x!', 'r'],
    ['a missing participant', 'participant', null, 'r'],
    ['a participant id with a line break', 'participant', 'pp\n1', 'r'],
    ['an empty reason', 'rail', 'sandbox', '  '],
  ])('INV-PAUSE-INPUT: %s is refused with 22023', async (_label, scope, target, reason) => {
    await expectSqlState(
      control.query('SELECT * FROM public.pause_dispatch($1, $2, $3)', [scope, target, reason]),
      '22023',
    );
    expect(await activePauses(control)).toEqual([]);
  });
});

describe('re-drive', () => {
  it('INV-REDRIVE-FAILED-ONLY: a FAILED item is queued again with the same key; the ledger keeps the FAILED attempt and appends the new one in drive 2', async () => {
    const prefix = uniquePrefix('redrive');
    const failed = await failedItem(prefix);
    expect((await listFailedItems(control, { limit: 100 })).map((item) => item.outboxId)).toContain(
      failed.outboxId,
    );

    const result = await redriveOutboxItem(control, {
      outboxId: failed.outboxId,
      reason: 'rail fixed the account',
    });
    expect(result).toMatchObject({ outboxId: failed.outboxId, redriven: true, drive: 2 });
    expect(
      (await listFailedItems(control, { limit: 100 })).map((item) => item.outboxId),
    ).not.toContain(failed.outboxId);

    // The same (instruction, key) replayed now reports the item as queued again.
    const replay = await enqueuePaymentOutbox(as.symphony_ingest, {
      instructionId: `${prefix}-1`,
      participantId: `${prefix}-participant`,
      idempotencyKey: `${prefix}-key-1`,
      railType: 'sandbox',
      payload: { n: 1 },
    });
    expect(replay).toMatchObject({ outboxId: failed.outboxId, state: 'PENDING' });

    const [again] = await claimAll();
    expect(again).toMatchObject({
      outboxId: failed.outboxId,
      idempotencyKey: failed.idempotencyKey,
      payload: failed.payload,
      attemptCount: 1,
    });
    await complete(again!, 'DISPATCHED');
    const { rows } = await db.owner.query<{ attempt_no: number; state: string; drive: number }>(
      `SELECT attempt_no, state::text AS state, drive FROM public.payment_outbox_attempts
        WHERE outbox_id = $1 ORDER BY attempt_no`,
      [failed.outboxId],
    );
    expect(rows).toEqual([
      { attempt_no: 1, state: 'FAILED', drive: 1 },
      { attempt_no: 2, state: 'DISPATCHED', drive: 2 },
    ]);
    expect((await auditRows('redrive')).at(-1)).toMatchObject({
      target: failed.outboxId,
      reason: 'rail fixed the account',
      details: expect.objectContaining({ error_code: 'HTTP_422', drive: 2 }),
    });
  });

  it('INV-REDRIVE-FAILED-ONLY: a queued item and a DISPATCHED item are refused with P7501, an unknown one with P7502', async () => {
    const [queued] = await enqueueItems(db.owner, 1, { prefix: uniquePrefix('queued') });
    await expectSqlState(redriveOutboxItem(control, { outboxId: queued!, reason: 'r' }), 'P7501');
    const [item] = await claimAll();
    await complete(item!, 'DISPATCHED');
    const refused = await expectSqlState(
      redriveOutboxItem(control, { outboxId: queued!, reason: 'r' }),
      'P7501',
    );
    expect(refused.message).toMatch(/DISPATCHED, not FAILED/);

    // After a re-drive that ended DISPATCHED, the old failure cannot be re-driven either.
    const failed = await failedItem();
    await redriveOutboxItem(control, { outboxId: failed.outboxId, reason: 'r' });
    await complete((await claimAll())[0]!, 'DISPATCHED');
    await expectSqlState(
      redriveOutboxItem(control, { outboxId: failed.outboxId, reason: 'r' }),
      'P7501',
    );
    expect(await pendingCount(failed.outboxId)).toBe(0);

    await expectSqlState(
      redriveOutboxItem(control, { outboxId: '00000000-0000-7000-8000-000000000000', reason: 'r' }),
      'P7502',
    );
  });

  it('INV-REDRIVE-ONCE: 8 connections re-driving one failure at once queue it once; the others are told it was already re-driven', async () => {
    const failed = await failedItem();
    const clients = await connectMany(db, 8);
    try {
      const results = await Promise.all(
        clients.map((client) =>
          redriveOutboxItem(client, { outboxId: failed.outboxId, reason: 'race' }),
        ),
      );
      expect(results.filter((result) => result.redriven)).toHaveLength(1);
      expect(new Set(results.map((result) => result.failedAttemptId)).size).toBe(1);
      expect(new Set(results.map((result) => result.drive))).toEqual(new Set([2]));
    } finally {
      await closeAll(clients);
    }
    expect(await pendingCount(failed.outboxId)).toBe(1);
    const { rows } = await db.owner.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM public.outbox_redrives WHERE outbox_id = $1',
      [failed.outboxId],
    );
    expect(rows[0]?.n).toBe(1);
    // A direct second record of the same failure is refused by the unique constraint.
    await expectSqlState(
      db.owner.query(
        `INSERT INTO public.outbox_redrives (outbox_id, failed_attempt_id, drive, reason, actor)
         SELECT outbox_id, failed_attempt_id, 3, 'again', 'owner' FROM public.outbox_redrives
          WHERE outbox_id = $1`,
        [failed.outboxId],
      ),
      '23505',
    );
  });

  it('INV-REDRIVE-ONCE: an item that fails again in drive 2 is a dead letter again and can be re-driven into drive 3', async () => {
    const failed = await failedItem();
    await redriveOutboxItem(control, { outboxId: failed.outboxId, reason: 'try again' });
    await complete((await claimAll())[0]!, 'FAILED');
    const listed = await listFailedItems(control, { limit: 100 });
    expect(listed.filter((item) => item.outboxId === failed.outboxId)).toEqual([
      expect.objectContaining({ attempts: 2, drive: 2, errorCode: 'HTTP_422' }),
    ]);
    expect(
      await redriveOutboxItem(control, { outboxId: failed.outboxId, reason: 'third time' }),
    ).toMatchObject({ redriven: true, drive: 3 });
  });

  it('INV-ATTEMPTS-ONE-TERMINAL-PER-DRIVE: a second terminal attempt in one drive is refused with 23505, even for the owner', async () => {
    const failed = await failedItem();
    await expectSqlState(
      db.owner.query(
        `INSERT INTO public.payment_outbox_attempts (outbox_id, attempt_no, state, completed_at)
         VALUES ($1, 2, 'FAILED', now())`,
        [failed.outboxId],
      ),
      '23505',
    );
    await redriveOutboxItem(control, { outboxId: failed.outboxId, reason: 'next drive' });
    await db.owner.query(
      `INSERT INTO public.payment_outbox_attempts (outbox_id, attempt_no, state, completed_at, drive)
       VALUES ($1, 2, 'FAILED', now(), 2)`,
      [failed.outboxId],
    );
  });

  it('INV-ATTEMPTS-ONE-DISPATCHED: a second DISPATCHED attempt for one item is refused with 23505, even in a new drive written by the owner', async () => {
    const [id] = await enqueueItems(db.owner, 1, { prefix: uniquePrefix('paid') });
    await complete((await claimAll())[0]!, 'DISPATCHED');
    const { rows } = await db.owner.query<{ attempt_id: string }>(
      'SELECT attempt_id FROM public.payment_outbox_attempts WHERE outbox_id = $1',
      [id],
    );
    // Bypass the function's refusal: record a re-drive directly, then a second dispatch.
    await db.owner.query(
      `INSERT INTO public.outbox_redrives (outbox_id, failed_attempt_id, drive, reason, actor)
       VALUES ($1, $2, 2, 'forged', 'owner')`,
      [id, rows[0]!.attempt_id],
    );
    await expectSqlState(
      db.owner.query(
        `INSERT INTO public.payment_outbox_attempts (outbox_id, attempt_no, state, completed_at, drive)
         VALUES ($1, 2, 'DISPATCHED', now(), 2)`,
        [id],
      ),
      '23505',
    );
  });

  it('INV-ATTEMPTS-DRIVE-FROM-LEDGER: an attempt written in another drive than 1 + the item’s re-drives is refused with P7503, even for the owner', async () => {
    const [id] = await enqueueItems(db.owner, 1, { prefix: uniquePrefix('drive') });
    const append = (drive: number, attemptNo: number) =>
      db.owner.query(
        `INSERT INTO public.payment_outbox_attempts (outbox_id, attempt_no, state, drive)
         VALUES ($1, $2, 'RETRYABLE', $3)`,
        [id, attemptNo, drive],
      );
    const error = await expectSqlState(append(7, 1), 'P7503');
    expect(error.message).toMatch(
      /^INV-ATTEMPTS-DRIVE-FROM-LEDGER: .* drive 7, but the item is in drive 1/,
    );
    await append(1, 1);

    // A re-driven item is in drive 2: drive 1 is refused there, drive 2 is accepted.
    const failed = await failedItem();
    await redriveOutboxItem(control, { outboxId: failed.outboxId, reason: 'drive check' });
    const inDrive = (drive: number) =>
      db.owner.query(
        `INSERT INTO public.payment_outbox_attempts (outbox_id, attempt_no, state, drive)
         VALUES ($1, 100, 'RETRYABLE', $2)`,
        [failed.outboxId, drive],
      );
    await expectSqlState(inDrive(1), 'P7503');
    await inDrive(2);
    const { rows } = await db.owner.query<{ drive: number }>(
      'SELECT drive FROM public.payment_outbox_attempts WHERE outbox_id = $1 AND attempt_no = 100',
      [failed.outboxId],
    );
    expect(rows).toEqual([{ drive: 2 }]);
  });

  it('a batch completion records a re-driven item in its new drive and a fresh item in drive 1, in one call', async () => {
    const failed = await failedItem();
    await redriveOutboxItem(control, { outboxId: failed.outboxId, reason: 'batch drives' });
    const [fresh] = await enqueueItems(db.owner, 1, { prefix: uniquePrefix('fresh') });
    const claimed = (await claimAll()).filter((item) =>
      [failed.outboxId, fresh].includes(item.outboxId),
    );
    expect(claimed).toHaveLength(2);
    const results = await completeOutboxBatch(
      as.symphony_executor,
      WORKER,
      claimed.map((item) => ({
        outboxId: item.outboxId,
        leaseToken: item.leaseToken,
        state: 'DISPATCHED' as const,
      })),
    );
    expect(results.map((result) => result.state)).toEqual(['DISPATCHED', 'DISPATCHED']);
    const { rows } = await db.owner.query<{ outbox_id: string; drive: number }>(
      `SELECT outbox_id, drive FROM public.payment_outbox_attempts
        WHERE state = 'DISPATCHED' AND outbox_id = ANY ($1::uuid[]) ORDER BY drive`,
      [[failed.outboxId, fresh]],
    );
    expect(rows).toEqual([
      { outbox_id: fresh, drive: 1 },
      { outbox_id: failed.outboxId, drive: 2 },
    ]);
  });

  it('INV-ATTEMPTS-DRIVE-FROM-LEDGER: one statement appending for a re-driven and a fresh item is checked row by row (P7503 for the wrong one; both drives recorded when right)', async () => {
    const failed = await failedItem();
    await redriveOutboxItem(control, { outboxId: failed.outboxId, reason: 'mixed statement' });
    const [fresh] = await enqueueItems(db.owner, 1, { prefix: uniquePrefix('fresh') });
    const appendBoth = (redrivenDrive: number, freshDrive: number) =>
      db.owner.query(
        `INSERT INTO public.payment_outbox_attempts (outbox_id, attempt_no, state, drive)
         VALUES ($1, 200, 'RETRYABLE', $2), ($3, 200, 'RETRYABLE', $4)`,
        [failed.outboxId, redrivenDrive, fresh, freshDrive],
      );
    const error = await expectSqlState(appendBoth(2, 2), 'P7503');
    expect(error.message).toContain(`outbox item ${fresh} was written in drive 2`);
    await expectSqlState(appendBoth(1, 1), 'P7503');
    await appendBoth(2, 1);
    const { rows } = await db.owner.query<{ outbox_id: string; drive: number }>(
      `SELECT outbox_id, drive FROM public.payment_outbox_attempts
        WHERE attempt_no = 200 AND outbox_id = ANY ($1::uuid[]) ORDER BY drive`,
      [[failed.outboxId, fresh]],
    );
    expect(rows).toEqual([
      { outbox_id: fresh, drive: 1 },
      { outbox_id: failed.outboxId, drive: 2 },
    ]);
  });

  it.each(['UPDATE', 'DELETE', 'TRUNCATE'])(
    'INV-REDRIVES-APPEND-ONLY: %s of the re-drive record as the owner is refused with P0001',
    async (operation) => {
      const failed = await failedItem();
      await redriveOutboxItem(control, { outboxId: failed.outboxId, reason: 'r' });
      const statement = {
        UPDATE: "UPDATE public.outbox_redrives SET reason = 'rewritten'",
        DELETE: 'DELETE FROM public.outbox_redrives',
        TRUNCATE: 'TRUNCATE public.outbox_redrives',
      }[operation]!;
      const error = await expectSqlState(db.owner.query(statement), 'P0001');
      expect(error.message).toMatch(/^INV-REDRIVES-APPEND-ONLY/);
    },
  );

  it('INV-REDRIVE-CEILING-PER-DRIVE: a re-driven item that had failed at the retry ceiling gets the full ceiling again (single, batch and repair)', async () => {
    await setRetryCeiling(db.owner, 3);
    const [id] = await enqueueItems(db.owner, 1, { prefix: uniquePrefix('ceiling') });
    const retryOnce = async (via: 'single' | 'batch' | 'repair') => {
      await makeDue(db.owner, [id!]);
      const [item] = await claimAll();
      if (!item) throw new Error('fixture: nothing claimed');
      if (via === 'repair') {
        await expireLeases(db.owner, [id!]);
        return (await repairExpiredLeases(as.symphony_executor, { batchSize: 10, workerId: 'r' }))
          .length;
      }
      if (via === 'single') return (await complete(item, 'RETRYABLE')).state;
      const [result] = await completeOutboxBatch(as.symphony_executor, WORKER, [
        { outboxId: item.outboxId, leaseToken: item.leaseToken, state: 'RETRYABLE' },
      ]);
      return result?.state;
    };
    expect(await retryOnce('single')).toBe('RETRYABLE');
    expect(await retryOnce('batch')).toBe('RETRYABLE');
    expect(await retryOnce('single')).toBe('FAILED');

    await redriveOutboxItem(control, { outboxId: id!, reason: 'second chance' });
    expect(await retryOnce('single')).toBe('RETRYABLE'); // attempt 4, 1st of drive 2
    expect(await retryOnce('repair')).toBe(1); // attempt 5, a ZOMBIE_REQUEUE, 2nd of drive 2
    expect(await retryOnce('batch')).toBe('FAILED'); // attempt 6, 3rd of drive 2
    const attempts = await readAttempts(db.owner, [id!]);
    expect(attempts.map((attempt) => [attempt.attempt_no, attempt.state])).toEqual([
      [1, 'RETRYABLE'],
      [2, 'RETRYABLE'],
      [3, 'FAILED'],
      [4, 'RETRYABLE'],
      [5, 'ZOMBIE_REQUEUE'],
      [6, 'FAILED'],
    ]);
  });

  it('lists dead letters filtered by rail and error code, oldest first', async () => {
    const first = await failedItem();
    const [otherId] = await enqueueItems(db.owner, 1, {
      prefix: uniquePrefix('other'),
      railType: 'other-rail',
    });
    const other = (await claimAll()).find((item) => item.outboxId === otherId)!;
    await completeOutboxAttempt(as.symphony_executor, WORKER, {
      outboxId: other.outboxId,
      leaseToken: other.leaseToken,
      state: 'FAILED',
      errorCode: 'HTTP_409',
    });
    const ids = (items: { outboxId: string }[]) => items.map((item) => item.outboxId);
    const all = ids(await listFailedItems(as.symphony_readonly, { limit: 10000 }));
    expect(all.indexOf(first.outboxId)).toBeLessThan(all.indexOf(other.outboxId));
    expect(ids(await listFailedItems(control, { railType: 'other-rail', limit: 100 }))).toEqual([
      other.outboxId,
    ]);
    const byCode = await listFailedItems(control, { errorCode: 'HTTP_409', limit: 100 });
    expect(ids(byCode)).toContain(other.outboxId);
    expect(ids(byCode)).not.toContain(first.outboxId);
    await expectSqlState(listFailedItems(control, { limit: 0 }), '22023');
  });
});
