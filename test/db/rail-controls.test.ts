/**
 * Per-rail controls (0023, 0024) at the claim and completion functions: rate limit (token
 * bucket), circuit breaker with one half-open probe, ordered delivery per participant.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { railOverview, redriveOutboxItem, setRailSettings } from '../../src/db/controls.ts';
import {
  claimOutboxBatch,
  completeOutboxAttempt,
  completeOutboxBatch,
  type ClaimedItem,
} from '../../src/db/outbox.ts';
import {
  enqueueItems,
  makeDue,
  outboxTestBed,
  readAttempts,
  uniquePrefix,
} from '../support/outbox-fixtures.ts';
import { connectAsEach, RUNTIME_ROLES } from '../support/role-boundaries.ts';
import { expectSqlState } from '../support/sqlstate.ts';

const { db } = await outboxTestBed({ emptyQueueBeforeEach: true });
const as = await connectAsEach(db, RUNTIME_ROLES);
const control = as.symphony_control;
const executor = as.symphony_executor;

afterEach(async () => {
  await db.owner.query('DELETE FROM public.outbox_ordered_blocks');
  await db.owner.query('DELETE FROM public.outbox_rail_settings');
});

const claim = (workerId = 'w1', railTypes = ['limited', 'sandbox']) =>
  claimOutboxBatch(executor, { batchSize: 1000, workerId, leaseSeconds: 60, railTypes });

async function outcome(
  item: ClaimedItem,
  state: 'DISPATCHED' | 'RETRYABLE' | 'FAILED',
  errorCode: string | null = null,
  workerId = 'w1',
) {
  return completeOutboxAttempt(executor, workerId, {
    outboxId: item.outboxId,
    leaseToken: item.leaseToken,
    state,
    errorCode,
    railReference: state === 'DISPATCHED' ? 'ref' : null,
  });
}

async function bucket(tokens: number) {
  // refilled_at in the future: no refill happens, so the claim sees exactly these tokens.
  await db.owner.query(
    `UPDATE public.outbox_rail_state SET tokens = $1, refilled_at = now() + interval '1 hour'
      WHERE rail_type = 'limited'`,
    [tokens],
  );
}

/** Every queued item of these ids unleased and due now (as if leases were released). */
async function requeueAll(ids: readonly string[]) {
  await db.owner.query(
    `UPDATE public.payment_outbox_pending SET claimed_by = NULL, lease_token = NULL,
            lease_expires_at = NULL WHERE outbox_id = ANY($1::uuid[])`,
    [ids],
  );
  await makeDue(db.owner, ids);
}

async function breaker() {
  const [rail] = (await railOverview(as.symphony_readonly)).filter(
    (row) => row.railType === 'limited',
  );
  return rail!;
}

describe('rail settings', () => {
  it('INV-RAIL-SETTINGS-AUDITED: control sets and removes a rail’s settings; each change is audited with old and new values', async () => {
    await setRailSettings(control, { railType: 'limited', maxPerSecond: 7, reason: 'bank asks' });
    await setRailSettings(control, {
      railType: 'limited',
      ordered: true,
      breakerThreshold: 3,
      reason: 'more',
    });
    expect(await breaker()).toMatchObject({
      maxPerSecond: 7,
      ordered: true,
      breakerThreshold: 3,
      breakerCooldownSeconds: 30,
      breakerMaxCooldownSeconds: 600,
      breakerState: 'closed',
    });
    await setRailSettings(control, {
      railType: 'limited',
      maxPerSecond: 0,
      breakerThreshold: 0,
      ordered: false,
      reason: 'remove',
    });
    expect(await breaker()).toMatchObject({
      maxPerSecond: null,
      ordered: false,
      breakerThreshold: null,
    });
    const { rows } = await db.owner.query<{ reason: string; details: Record<string, unknown> }>(
      `SELECT reason, details FROM public.outbox_control_audit
        WHERE action = 'set_rail' AND target = 'limited' ORDER BY recorded_at, audit_id`,
    );
    expect(rows.map((row) => row.reason)).toEqual(['bank asks', 'more', 'remove']);
    expect(rows[2]!.details).toMatchObject({
      old: { max_per_second: 7, ordered: true, breaker_threshold: 3 },
      new: { max_per_second: null, ordered: false, breaker_threshold: null },
    });
  });

  it.each([
    ['maxPerSecond', -1],
    ['maxPerSecond', 100001],
    ['breakerThreshold', 1001],
    ['breakerCooldownSeconds', 0],
    ['breakerMaxCooldownSeconds', 86401],
  ])('INV-RAIL-SETTINGS-RANGE: %s = %d is refused with 22023', async (name, value) => {
    await expectSqlState(
      setRailSettings(control, { railType: 'limited', [name]: value, reason: 'r' }),
      '22023',
    );
    expect(await railOverview(control)).toEqual([]);
  });

  it('INV-RAIL-SETTINGS-RANGE: a maximum cool-down below the cool-down is refused with 22023', async () => {
    await expectSqlState(
      setRailSettings(control, {
        railType: 'limited',
        breakerThreshold: 2,
        breakerCooldownSeconds: 120,
        breakerMaxCooldownSeconds: 60,
        reason: 'r',
      }),
      '22023',
    );
  });

  it.each(RUNTIME_ROLES.filter((role) => role !== 'symphony_control'))(
    'INV-RAIL-SETTINGS-AUDITED: %s cannot change rail settings (42501)',
    async (role) => {
      await expectSqlState(
        setRailSettings(as[role], { railType: 'limited', maxPerSecond: 1, reason: 'r' }),
        '42501',
      );
      await expectSqlState(
        as[role].query('UPDATE public.outbox_rail_state SET tokens = 1000'),
        '42501',
      );
    },
  );
});

describe('rate limit', () => {
  it('INV-RAIL-RATE-LIMIT: a claim takes at most the rail’s tokens; other rails are not held back', async () => {
    await setRailSettings(control, { railType: 'limited', maxPerSecond: 5, reason: 'r' });
    const limited = await enqueueItems(db.owner, 20, {
      prefix: uniquePrefix('lim'),
      railType: 'limited',
    });
    const plain = await enqueueItems(db.owner, 4, { prefix: uniquePrefix('plain') });

    // A new limit starts with a full bucket: one second's worth.
    const first = await claim();
    expect(first.filter((item) => item.railType === 'limited')).toHaveLength(5);
    expect(
      first
        .filter((item) => item.railType === 'sandbox')
        .map((item) => item.outboxId)
        .sort(),
    ).toEqual([...plain].sort());
    await bucket(0);
    expect(await claim()).toEqual([]);
    await bucket(3.9);
    expect(await claim()).toHaveLength(3);
    const { rows } = await db.owner.query<{ tokens: number }>(
      "SELECT tokens FROM public.outbox_rail_state WHERE rail_type = 'limited'",
    );
    expect(rows[0]!.tokens).toBeCloseTo(0.9, 5);
    expect(limited).toHaveLength(20);
  });
});

describe('circuit breaker', () => {
  it('INV-RAIL-BREAKER: consecutive transport failures open it; while open nothing is claimed; one probe after the cool-down; its failure doubles the cool-down, its success closes it', async () => {
    await setRailSettings(control, {
      railType: 'limited',
      breakerThreshold: 3,
      breakerCooldownSeconds: 60,
      breakerMaxCooldownSeconds: 100,
      reason: 'r',
    });
    const ids = await enqueueItems(db.owner, 10, {
      prefix: uniquePrefix('brk'),
      railType: 'limited',
    });
    const four = (await claim()).slice(0, 4);
    // A 4xx is the rail answering: it ends the run of failures.
    await outcome(four[0]!, 'RETRYABLE', 'TIMEOUT');
    await outcome(four[1]!, 'FAILED', 'HTTP_422');
    expect((await breaker()).consecutiveFailures).toBe(0);
    const [a, b] = [four[2]!, four[3]!];
    await outcome(a, 'RETRYABLE', 'NETWORK_ERROR');
    const [batchResult] = await completeOutboxBatch(executor, 'w1', [
      { outboxId: b.outboxId, leaseToken: b.leaseToken, state: 'RETRYABLE', errorCode: 'HTTP_503' },
    ]);
    expect(batchResult?.state).toBe('RETRYABLE');
    expect(await breaker()).toMatchObject({ breakerState: 'closed', consecutiveFailures: 2 });
    // The other six were leased by the first claim: hand them back, and fail a third.
    await requeueAll(ids);
    const [third] = await claim();
    await outcome(third!, 'RETRYABLE', 'TIMEOUT');
    expect(await breaker()).toMatchObject({ breakerState: 'open', cooldownSeconds: 60 });

    await requeueAll(ids);
    const countsBefore = await readAttempts(db.owner, ids);
    expect(await claim()).toEqual([]);
    expect(await readAttempts(db.owner, ids)).toEqual(countsBefore);

    // Cool-down over: exactly one probe, whoever asks.
    await db.owner.query(
      "UPDATE public.outbox_rail_state SET open_until = now() - interval '1 second' WHERE rail_type = 'limited'",
    );
    expect((await breaker()).breakerState).toBe('half_open');
    const probes = [...(await claim('w1')), ...(await claim('w2'))];
    expect(probes).toHaveLength(1);
    await outcome(probes[0]!, 'RETRYABLE', 'HTTP_502');
    expect(await breaker()).toMatchObject({ breakerState: 'open', cooldownSeconds: 100 });

    await db.owner.query(
      "UPDATE public.outbox_rail_state SET open_until = now() - interval '1 second' WHERE rail_type = 'limited'",
    );
    await makeDue(db.owner, ids);
    const [probe] = await claim('w2');
    expect(await claim('w1')).toEqual([]);
    await outcome(probe!, 'DISPATCHED', null, 'w2');
    expect(await breaker()).toMatchObject({ breakerState: 'closed', consecutiveFailures: 0 });
    await requeueAll(ids);
    expect((await claim()).length).toBe(8);
  });
});

describe('ordered delivery', () => {
  it('INV-RAIL-ORDERED: per participant only the lowest queued sequence is claimed, one at a time; a FAILED head blocks its participant until re-driven; others proceed', async () => {
    await setRailSettings(control, { railType: 'limited', ordered: true, reason: 'r' });
    const alice = uniquePrefix('alice');
    const bob = uniquePrefix('bob');
    const a = await enqueueItems(db.owner, 3, {
      prefix: uniquePrefix('a'),
      participants: [alice],
      railType: 'limited',
    });
    const b = await enqueueItems(db.owner, 2, {
      prefix: uniquePrefix('b'),
      participants: [bob],
      railType: 'limited',
    });
    const ids = (items: ClaimedItem[]) => items.map((item) => item.outboxId).sort();

    const heads = await claim();
    expect(ids(heads)).toEqual([a[0], b[0]].sort());
    expect(await claim('w2')).toEqual([]);

    const headA = heads.find((item) => item.outboxId === a[0])!;
    const headB = heads.find((item) => item.outboxId === b[0])!;
    await outcome(headA, 'RETRYABLE', 'HTTP_503'); // a[0] waits for its retry; a[1] must not pass it
    await outcome(headB, 'DISPATCHED');
    expect(ids(await claim())).toEqual([b[1]]);

    await makeDue(db.owner, [a[0]!]);
    const [retried] = await claim();
    expect(retried?.outboxId).toBe(a[0]);
    expect((await outcome(retried!, 'FAILED', 'HTTP_422')).state).toBe('FAILED');
    expect(await claim()).toEqual([]); // a[1] waits behind the failed head
    expect((await breaker()).blockedParticipants).toBe(1);

    await redriveOutboxItem(control, { outboxId: a[0]!, reason: 'fixed' });
    const [again] = await claim();
    expect(again?.outboxId).toBe(a[0]);
    await outcome(again!, 'DISPATCHED');
    const [next] = await claim();
    expect(next?.outboxId).toBe(a[1]);
  });

  it('INV-RAIL-ORDERED-HEADS-BEYOND-WINDOW: a participant whose head lies behind more due rows than one claim looks at is still claimed, and leased heads are never passed', async () => {
    await setRailSettings(control, { railType: 'limited', ordered: true, reason: 'r' });
    const alice = uniquePrefix('alice');
    const bob = uniquePrefix('bob');
    const carol = uniquePrefix('carol');
    // 100 rows of two participants first; carol's only item comes after all of them, beyond
    // the 64 due rows a claim of 4 looks at before it searches participant by participant.
    const early = await enqueueItems(db.owner, 100, {
      prefix: uniquePrefix('early'),
      participants: [alice, bob],
      railType: 'limited',
    });
    const [carolsHead] = await enqueueItems(db.owner, 1, {
      prefix: uniquePrefix('late'),
      participants: [carol],
      railType: 'limited',
    });
    const claimFour = (workerId: string) =>
      claimOutboxBatch(executor, {
        batchSize: 4,
        workerId,
        leaseSeconds: 60,
        railTypes: ['limited'],
      });

    const heads = await claimFour('w1');
    expect(heads.map((item) => item.outboxId).sort()).toEqual(
      [early[0], early[1], carolsHead].sort(),
    );
    // Every head is leased now: 98 due rows, none of them a free head.
    expect(await claimFour('w2')).toEqual([]);

    const alicesHead = heads.find((item) => item.outboxId === early[0])!;
    await outcome(alicesHead, 'DISPATCHED');
    expect((await claimFour('w2')).map((item) => item.outboxId)).toEqual([early[2]]);
  });
});
