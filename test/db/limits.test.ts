/**
 * Operator limits (0019): one row only the owner or symphony_control (audited) can change;
 * runtime arguments beyond them are refused with 22023 where they enter.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  claimOutboxBatch,
  completeOutboxAttempt,
  completeOutboxBatch,
  outboxCurrentLimits,
  repairExpiredLeases,
  setOutboxLimit,
} from '../../src/db/outbox.ts';
import { enqueueAndClaim, outboxTestBed, readAttempts } from '../support/outbox-fixtures.ts';
import { connectAsEach, RUNTIME_ROLES } from '../support/role-boundaries.ts';
import { expectSqlState } from '../support/sqlstate.ts';

const { db } = await outboxTestBed({ emptyQueueBeforeEach: true });
const as = await connectAsEach(db, RUNTIME_ROLES);

const DEFAULTS = {
  retryCeiling: 20,
  maxLeaseSeconds: 3600,
  maxRetryDelaySeconds: 86400,
  maxPayloadBytes: 65536,
  maxPayloadDepth: 32,
};

afterEach(async () => {
  await db.owner.query(
    `UPDATE public.outbox_limits SET retry_ceiling = 20, max_lease_seconds = 3600,
       max_retry_delay_seconds = 86400, max_payload_bytes = 65536, max_payload_depth = 32`,
  );
});

describe('outbox_limits', () => {
  it('has the documented defaults, readable by every runtime role', async () => {
    for (const role of RUNTIME_ROLES) {
      expect(await outboxCurrentLimits(as[role]), role).toMatchObject(DEFAULTS);
    }
  });

  it('INV-LIMITS-CONTROL-AUDITED: symphony_control changes a limit; the audit row names the login, server time and reason', async () => {
    const login = await db.createLoginRole(['symphony_control'], { inherit: false });
    const control = await login.connect('symphony_control');
    try {
      const before = new Date();
      expect(
        await setOutboxLimit(control, {
          name: 'retry_ceiling',
          value: 5,
          reason: 'bank X retries are expensive',
        }),
      ).toEqual({ name: 'retry_ceiling', oldValue: 20, newValue: 5 });
      expect((await outboxCurrentLimits(as.symphony_executor)).retryCeiling).toBe(5);
      const { rows } = await db.owner.query<{
        action: string;
        target: string;
        details: unknown;
        reason: string;
        actor: string;
        recorded_at: Date;
      }>(
        `SELECT action, target, details, reason, actor, recorded_at
           FROM public.outbox_control_audit ORDER BY recorded_at DESC LIMIT 1`,
      );
      expect(rows[0]).toMatchObject({
        action: 'set_limit',
        target: 'retry_ceiling',
        details: { old: 20, new: 5 },
        reason: 'bank X retries are expensive',
        actor: login.name,
      });
      expect(rows[0]!.recorded_at.getTime()).toBeGreaterThanOrEqual(before.getTime() - 5_000);
    } finally {
      await control.end();
    }
  });

  it.each([
    ['retry_ceiling', 0],
    ['retry_ceiling', 1001],
    ['max_lease_seconds', 86401],
    ['max_retry_delay_seconds', 0],
    ['max_payload_bytes', 16777217],
    ['max_payload_depth', 0],
  ] as const)(
    'INV-LIMITS-RANGE: set_outbox_limit(%s, %d) is refused with 22023 naming the range; nothing changes',
    async (name, value) => {
      const error = await expectSqlState(
        setOutboxLimit(as.symphony_control, { name, value, reason: 'test' }),
        '22023',
      );
      expect(error.message).toContain(`${name} must be between`);
      expect(await outboxCurrentLimits(db.owner)).toMatchObject(DEFAULTS);
    },
  );

  it('INV-LIMITS-RANGE: an unknown limit or an empty reason is refused with 22023', async () => {
    await expectSqlState(
      db.owner.query(`SELECT * FROM public.set_outbox_limit('max_power', 1, 'why')`),
      '22023',
    );
    await expectSqlState(
      setOutboxLimit(as.symphony_control, { name: 'retry_ceiling', value: 3, reason: '  ' }),
      '22023',
    );
  });

  it('INV-LIMITS-RANGE: the owner writing the table directly is held to the same ranges by CHECK constraints (23514)', async () => {
    await expectSqlState(
      db.owner.query('UPDATE public.outbox_limits SET retry_ceiling = 0'),
      '23514',
    );
    await expectSqlState(
      db.owner.query('INSERT INTO public.outbox_limits (singleton) VALUES (false)'),
      '23514',
    );
  });

  it.each(['DELETE FROM public.outbox_limits', 'TRUNCATE public.outbox_limits'])(
    'INV-LIMITS-ALWAYS-ONE-ROW: %s as the owner is refused with P0001',
    async (sql) => {
      const error = await expectSqlState(db.owner.query(sql), 'P0001');
      expect(error.message).toMatch(/^INV-LIMITS-ALWAYS-ONE-ROW: /);
    },
  );

  it.each([
    'symphony_executor',
    'symphony_ingest',
    'symphony_readonly',
    'symphony_auditor',
  ] as const)(
    'INV-LIMITS-CONTROL-AUDITED: %s can neither call set_outbox_limit nor write outbox_limits (42501)',
    async (role) => {
      await expectSqlState(
        setOutboxLimit(as[role], { name: 'retry_ceiling', value: 1, reason: 'sabotage' }),
        '42501',
      );
      await expectSqlState(
        as[role].query('UPDATE public.outbox_limits SET retry_ceiling = 1'),
        '42501',
      );
    },
  );

  it.each([
    ['UPDATE', `UPDATE public.outbox_control_audit SET reason = 'rewritten'`],
    ['DELETE', 'DELETE FROM public.outbox_control_audit'],
    ['TRUNCATE', 'TRUNCATE public.outbox_control_audit'],
  ])(
    'INV-CONTROL-AUDIT-APPEND-ONLY: %s of the audit as the owner is refused with P0001',
    async (operation, sql) => {
      await setOutboxLimit(db.owner, { name: 'max_payload_depth', value: 31, reason: 'history' });
      const error = await expectSqlState(db.owner.query(sql), 'P0001');
      expect(error.message).toMatch(/^INV-CONTROL-AUDIT-APPEND-ONLY: /);
      expect(error.message).toContain(operation);
    },
  );
});

describe('runtime arguments beyond the limits', () => {
  it('INV-LIMITS-LEASE: a claim asking for a lease above max_lease_seconds is refused with 22023', async () => {
    await db.owner.query('UPDATE public.outbox_limits SET max_lease_seconds = 120');
    const error = await expectSqlState(
      claimOutboxBatch(as.symphony_executor, {
        batchSize: 10,
        workerId: 'w',
        leaseSeconds: 121,
        railTypes: ['sandbox'],
      }),
      '22023',
    );
    expect(error.message).toContain('outbox_limits.max_lease_seconds');
    // 2^31-1 seconds, which used to park an item until 2094.
    await expectSqlState(
      claimOutboxBatch(as.symphony_executor, {
        batchSize: 10,
        workerId: 'w',
        leaseSeconds: 2 ** 31 - 1,
        railTypes: ['sandbox'],
      }),
      '22023',
    );
  });

  it('INV-LIMITS-RETRY-DELAY: a retry delay above max_retry_delay_seconds is refused with 22023, single and batch; nothing recorded', async () => {
    const [single, batched] = await enqueueAndClaim(db.owner, 2, { workerId: 'w' });
    if (!single || !batched) throw new Error('fixture claimed too little');
    const tooLong = 86_401;
    await expectSqlState(
      completeOutboxAttempt(as.symphony_executor, 'w', {
        outboxId: single.outboxId,
        leaseToken: single.leaseToken,
        state: 'RETRYABLE',
        retryDelaySeconds: tooLong,
      }),
      '22023',
    );
    await expectSqlState(
      completeOutboxBatch(as.symphony_executor, 'w', [
        { outboxId: single.outboxId, leaseToken: single.leaseToken, state: 'DISPATCHED' },
        {
          outboxId: batched.outboxId,
          leaseToken: batched.leaseToken,
          state: 'RETRYABLE',
          retryDelaySeconds: 2 ** 31 - 1,
        },
      ]),
      '22023',
    );
    expect(await readAttempts(db.owner, [single.outboxId, batched.outboxId])).toEqual([]);
  });

  it('INV-LIMITS-CHUNKS: claim and repair take at most 1000 items per call (22023 above)', async () => {
    await expectSqlState(
      claimOutboxBatch(as.symphony_executor, {
        batchSize: 1001,
        workerId: 'w',
        leaseSeconds: 30,
        railTypes: ['sandbox'],
      }),
      '22023',
    );
    await expectSqlState(
      repairExpiredLeases(as.symphony_executor, { batchSize: 1001, workerId: 'w' }),
      '22023',
    );
  });

  it('INV-LEDGER-BOUNDED-TEXT: an adapter-sized error message, error code and reference are bounded in the ledger', async () => {
    const [failed, sent] = await enqueueAndClaim(db.owner, 2, { workerId: 'w' });
    if (!failed || !sent) throw new Error('fixture claimed too little');
    await completeOutboxBatch(as.symphony_executor, 'w', [
      {
        outboxId: failed.outboxId,
        leaseToken: failed.leaseToken,
        state: 'FAILED',
        errorCode: 'E'.repeat(10_000),
        errorMessage: 'm'.repeat(1_000_000),
      },
      {
        outboxId: sent.outboxId,
        leaseToken: sent.leaseToken,
        state: 'DISPATCHED',
        railReference: 'r'.repeat(513),
      },
    ]);
    const attempts = await readAttempts(db.owner, [failed.outboxId, sent.outboxId]);
    const byId = new Map(attempts.map((attempt) => [attempt.outbox_id, attempt]));
    expect(byId.get(failed.outboxId)?.error_code).toHaveLength(64);
    expect(byId.get(failed.outboxId)?.error_message).toHaveLength(1000);
    // A cut reference would name another payment: it is dropped, the dispatch still recorded.
    expect(byId.get(sent.outboxId)).toMatchObject({ state: 'DISPATCHED', rail_reference: null });
  });
});

describe('claims by rail type', () => {
  it('INV-CLAIM-RAIL-TYPES: a claim returns only items of the rail types it names; others stay unleased', async () => {
    const railed = async (railType: string) => {
      const { rows } = await db.owner.query<{ outbox_id: string }>(
        `SELECT outbox_id FROM public.enqueue_payment_outbox($1, $2, $3, $4, '{}')`,
        [`instr-${railType}`, 'p-rails', `key-${railType}`, railType],
      );
      return rows[0]!.outbox_id;
    };
    const alpha = await railed('alpha');
    const beta = await railed('beta');
    const gamma = await railed('gamma');
    const claimed = await claimOutboxBatch(as.symphony_executor, {
      batchSize: 10,
      workerId: 'w',
      leaseSeconds: 30,
      railTypes: ['alpha', 'gamma'],
    });
    expect(new Set(claimed.map((item) => item.outboxId))).toEqual(new Set([alpha, gamma]));
    const { rows } = await db.owner.query<{ claimed_by: string | null }>(
      'SELECT claimed_by FROM public.payment_outbox_pending WHERE outbox_id = $1',
      [beta],
    );
    expect(rows).toEqual([{ claimed_by: null }]);
    await expectSqlState(
      claimOutboxBatch(as.symphony_executor, {
        batchSize: 10,
        workerId: 'w',
        leaseSeconds: 30,
        railTypes: [],
      }),
      '22023',
    );
  });
});
