/**
 * The payment contract at enqueue (0019–0021): one idempotency key is one payment, a replay
 * must repeat the original, and what could never be delivered is refused up front. Every
 * refusal is asserted by its exact SQLSTATE; invariant proofs run as the owner.
 */
import { describe, expect, it } from 'vitest';
import {
  claimOutboxBatch,
  completeOutboxAttempt,
  enqueuePaymentOutbox,
  enqueuePaymentOutboxBatch,
  type EnqueueRequest,
} from '../../src/db/outbox.ts';
import { outboxTestBed, uniquePrefix } from '../support/outbox-fixtures.ts';
import { expectSqlState } from '../support/sqlstate.ts';

const { db, clients } = await outboxTestBed({ connections: 8 });

function request(prefix: string, overrides: Partial<EnqueueRequest> = {}): EnqueueRequest {
  return {
    instructionId: `${prefix}-instruction`,
    participantId: `${prefix}-participant`,
    idempotencyKey: `${prefix}-key`,
    railType: 'sandbox',
    payload: { amount: '100.00', currency: 'ZMW', beneficiary: 'alice' },
    ...overrides,
  };
}

async function itemsWithKey(key: string): Promise<number> {
  const { rows } = await db.owner.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM public.payment_outbox_items WHERE idempotency_key = $1',
    [key],
  );
  return rows[0]?.n ?? -1;
}

async function nextSequenceOf(participantId: string): Promise<string | undefined> {
  const { rows } = await db.owner.query<{ next_sequence_id: string }>(
    'SELECT next_sequence_id FROM public.participant_outbox_sequences WHERE participant_id = $1',
    [participantId],
  );
  return rows[0]?.next_sequence_id;
}

/** Claims and completes the one due sandbox item with this id. */
async function finish(outboxId: string, state: 'DISPATCHED' | 'FAILED'): Promise<void> {
  const claimed = await claimOutboxBatch(db.owner, {
    batchSize: 1000,
    workerId: 'finisher',
    leaseSeconds: 60,
    railTypes: ['sandbox'],
  });
  const item = claimed.find((candidate) => candidate.outboxId === outboxId);
  if (!item) throw new Error(`fixture could not claim ${outboxId}`);
  await completeOutboxAttempt(db.owner, 'finisher', {
    outboxId,
    leaseToken: item.leaseToken,
    state,
    errorCode: state === 'FAILED' ? 'REJECTED' : null,
  });
}

describe('one idempotency key is one payment', () => {
  it('INV-KEY-ONE-PAYMENT: a key already used by another instruction is refused with P7401, queued or finished', async () => {
    const prefix = uniquePrefix('one-key');
    const alice = request(prefix, { instructionId: `${prefix}-alice` });
    const bob = request(prefix, {
      instructionId: `${prefix}-bob`,
      participantId: `${prefix}-bob`,
      payload: { amount: '5000.00', currency: 'ZMW', beneficiary: 'bob' },
    });
    const first = await enqueuePaymentOutbox(db.owner, alice);

    const whileQueued = await expectSqlState(enqueuePaymentOutbox(db.owner, bob), 'P7401');
    expect(whileQueued.message).toContain('already used by a different instruction');
    expect(whileQueued.message).toContain(first.outboxId);

    // The rule outlives the queue row: the key stays taken after alice's payment is sent.
    await finish(first.outboxId, 'DISPATCHED');
    await expectSqlState(enqueuePaymentOutbox(db.owner, bob), 'P7401');
    expect(await itemsWithKey(alice.idempotencyKey)).toBe(1);
    expect(await nextSequenceOf(bob.participantId)).toBeUndefined();
  });

  it('INV-KEY-ONE-PAYMENT: the unique index refuses a second item with a used key even when written directly (23505)', async () => {
    const prefix = uniquePrefix('one-key-index');
    const first = await enqueuePaymentOutbox(db.owner, request(prefix));
    const error = await expectSqlState(
      db.owner.query(
        `INSERT INTO public.payment_outbox_items (
           outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
           payload, payload_sha256)
         VALUES (uuidv7(), 'other-instruction', 'other-participant', 1, $1, 'sandbox', '{}',
                 repeat('0', 64))`,
        [`${prefix}-key`],
      ),
      '23505',
    );
    expect(error.message).toContain('ux_items_idempotency_key');
    expect(first.state).toBe('PENDING');
  });

  it('INV-KEY-ONE-PAYMENT: 8 connections racing different instructions on one key: exactly one item, seven P7401', async () => {
    const prefix = uniquePrefix('one-key-race');
    const outcomes = await Promise.allSettled(
      clients.map((client, index) =>
        enqueuePaymentOutbox(
          client,
          request(prefix, {
            instructionId: `${prefix}-instruction-${index}`,
            participantId: `${prefix}-participant-${index}`,
          }),
        ),
      ),
    );
    const refused = outcomes.filter((outcome) => outcome.status === 'rejected');
    expect(outcomes.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(1);
    expect(refused.map((outcome) => (outcome.reason as { code?: string }).code)).toEqual(
      Array.from({ length: 7 }, () => 'P7401'),
    );
    expect(await itemsWithKey(`${prefix}-key`)).toBe(1);
  });

  it.each([
    ['participant_id', { participantId: 'someone-else' }],
    ['rail_type', { railType: 'other-rail' }],
    ['payload', { payload: { amount: '100.01', currency: 'ZMW', beneficiary: 'alice' } }],
  ] as const)(
    'INV-KEY-REPLAY-EXACT: the same (instruction, key) with a different %s is refused with P7402 naming it',
    async (field, change) => {
      const prefix = uniquePrefix(`replay-${field}`);
      const original = request(prefix);
      const first = await enqueuePaymentOutbox(db.owner, original);
      const error = await expectSqlState(
        enqueuePaymentOutbox(db.owner, { ...original, ...change }),
        'P7402',
      );
      expect(error.message).toContain(`with a different ${field}`);
      // The identical replay still returns the item.
      expect(await enqueuePaymentOutbox(db.owner, original)).toEqual(first);
      expect(await itemsWithKey(original.idempotencyKey)).toBe(1);
    },
  );

  it('INV-KEY-REPLAY-EXACT: after a FAILED outcome, a replay with different content is refused too', async () => {
    const prefix = uniquePrefix('replay-failed');
    const original = request(prefix);
    const first = await enqueuePaymentOutbox(db.owner, original);
    await finish(first.outboxId, 'FAILED');
    await expectSqlState(
      enqueuePaymentOutbox(db.owner, { ...original, payload: { amount: '1.00' } }),
      'P7402',
    );
    expect(await enqueuePaymentOutbox(db.owner, original)).toMatchObject({
      outboxId: first.outboxId,
      state: 'FAILED',
    });
  });

  describe('in a batch, element by element and within the batch', () => {
    it('INV-KEY-ONE-PAYMENT: a batch reusing a key (within itself or of a stored item) for another instruction is refused whole with P7401', async () => {
      const prefix = uniquePrefix('batch-key');
      const stored = request(`${prefix}-stored`);
      await enqueuePaymentOutbox(db.owner, stored);
      const fresh = request(`${prefix}-fresh`);

      const within = await expectSqlState(
        enqueuePaymentOutboxBatch(db.owner, [
          fresh,
          { ...fresh, instructionId: `${prefix}-other` },
        ]),
        'P7401',
      );
      expect(within.message).toContain('element 2 uses the idempotency key of element 1');

      const againstStored = await expectSqlState(
        enqueuePaymentOutboxBatch(db.owner, [
          fresh,
          { ...stored, instructionId: `${prefix}-thief` },
        ]),
        'P7401',
      );
      expect(againstStored.message).toContain('element 2:');
      expect(await itemsWithKey(fresh.idempotencyKey)).toBe(0);
      expect(await nextSequenceOf(fresh.participantId)).toBeUndefined();
    });

    it('INV-KEY-REPLAY-EXACT: a batch repeating a key with different content (within itself or of a stored item) is refused whole with P7402', async () => {
      const prefix = uniquePrefix('batch-replay');
      const stored = request(`${prefix}-stored`);
      await enqueuePaymentOutbox(db.owner, stored);
      const fresh = request(`${prefix}-fresh`);

      await expectSqlState(
        enqueuePaymentOutboxBatch(db.owner, [fresh, { ...fresh, railType: 'other-rail' }]),
        'P7402',
      );
      await expectSqlState(
        enqueuePaymentOutboxBatch(db.owner, [fresh, { ...stored, payload: { changed: true } }]),
        'P7402',
      );
      expect(await itemsWithKey(fresh.idempotencyKey)).toBe(0);
      // Identical repeats are one item, as before.
      const results = await enqueuePaymentOutboxBatch(db.owner, [fresh, stored, fresh]);
      expect(results[0]?.outboxId).toBe(results[2]?.outboxId);
      expect(await itemsWithKey(fresh.idempotencyKey)).toBe(1);
    });
  });
});

describe('bounded inputs, refused at enqueue', () => {
  const tooLong = (length: number) => 'x'.repeat(length);
  it.each([
    ['idempotencyKey', 'a key with a trailing space ', 'idempotency_key'],
    ['idempotencyKey', ' leading-space', 'idempotency_key'],
    ['idempotencyKey', 'line\r\nbreak', 'idempotency_key'],
    ['idempotencyKey', 'tab\tinside', 'idempotency_key'],
    ['idempotencyKey', 'bell\u0007', 'idempotency_key'],
    ['idempotencyKey', 'café', 'idempotency_key'],
    ['idempotencyKey', '', 'idempotency_key'],
    ['idempotencyKey', tooLong(256), 'idempotency_key'],
    ['instructionId', 'instr\nuction', 'instruction_id'],
    ['instructionId', tooLong(129), 'instruction_id'],
    ['participantId', 'escape\u001b[31m', 'participant_id'],
    ['participantId', 'Zoë', 'participant_id'],
  ] as const)(
    'INV-ENQUEUE-IDENTIFIERS: %s %j is refused with P7405 naming the field and its bound',
    async (field, value, column) => {
      const prefix = uniquePrefix('ident');
      const bad = request(prefix, { [field]: value });
      const error = await expectSqlState(enqueuePaymentOutbox(db.owner, bad), 'P7405');
      expect(error.message).toContain(`${column} must be 1 to`);
      expect(error.message).toContain('printable ASCII');
      await expectSqlState(
        enqueuePaymentOutboxBatch(db.owner, [request(`${prefix}-ok`), bad]),
        'P7405',
      );
      expect(await nextSequenceOf(`${prefix}-ok-participant`)).toBeUndefined();
    },
  );

  it('INV-ENQUEUE-IDENTIFIERS: printable ASCII with inner spaces, at the length bound, is accepted', async () => {
    const prefix = uniquePrefix('ident-ok');
    const key = `${prefix} ${'k'.repeat(255 - prefix.length - 1)}`;
    expect(key).toHaveLength(255);
    expect(
      await enqueuePaymentOutbox(db.owner, request(prefix, { idempotencyKey: key })),
    ).toMatchObject({
      state: 'PENDING',
    });
  });

  it.each(['has space', '-leading-dash', tooLong(65), 'rail/with/slash', 'émoney'])(
    'INV-ENQUEUE-RAIL-TYPE: rail_type %j is refused with P7406',
    async (railType) => {
      const prefix = uniquePrefix('rail');
      const error = await expectSqlState(
        enqueuePaymentOutbox(db.owner, request(prefix, { railType })),
        'P7406',
      );
      expect(error.message).toContain('rail_type must be 1-64 letters');
      // Never echoed: a 10 MB rail_type must not become a 10 MB error.
      expect(error.message.length).toBeLessThan(300);
    },
  );

  it('INV-ENQUEUE-RAIL-TYPE: a rail_type of 64 characters using every allowed sign is accepted', async () => {
    const prefix = uniquePrefix('rail-ok');
    const railType = `Z9_.:-${'r'.repeat(58)}`;
    expect(railType).toHaveLength(64);
    expect(await enqueuePaymentOutbox(db.owner, request(prefix, { railType }))).toMatchObject({
      state: 'PENDING',
    });
  });

  it('INV-ENQUEUE-PAYLOAD-SIZE: a payload over max_payload_bytes (64 KiB by default) is refused with P7403 naming the limit', async () => {
    const prefix = uniquePrefix('size');
    const big = { blob: 'x'.repeat(64 * 1024) };
    const error = await expectSqlState(
      enqueuePaymentOutbox(db.owner, request(prefix, { payload: big })),
      'P7403',
    );
    expect(error.message).toContain('the limit is 65536 bytes (outbox_limits.max_payload_bytes)');
    await expectSqlState(
      enqueuePaymentOutboxBatch(db.owner, [
        request(`${prefix}-ok`),
        request(prefix, { payload: big }),
      ]),
      'P7403',
    );
    expect(await nextSequenceOf(`${prefix}-ok-participant`)).toBeUndefined();
  });

  it('INV-ENQUEUE-PAYLOAD-SIZE: the owner can lower the limit; the next enqueue obeys it', async () => {
    const prefix = uniquePrefix('size-owner');
    await db.owner.query('UPDATE public.outbox_limits SET max_payload_bytes = 100');
    try {
      await expectSqlState(
        enqueuePaymentOutbox(db.owner, request(prefix, { payload: { blob: 'x'.repeat(100) } })),
        'P7403',
      );
      expect(
        await enqueuePaymentOutbox(db.owner, request(prefix, { payload: { small: 1 } })),
      ).toMatchObject({ state: 'PENDING' });
    } finally {
      await db.owner.query('UPDATE public.outbox_limits SET max_payload_bytes = 65536');
    }
  });

  it('INV-ENQUEUE-PAYLOAD-DEPTH: a payload nested deeper than max_payload_depth (32) is refused with P7404; 32 levels pass', async () => {
    const prefix = uniquePrefix('depth');
    const nested = (levels: number): Record<string, unknown> => {
      let value: unknown = 1;
      for (let level = 0; level < levels; level += 1)
        value = (levels - level) % 2 === 1 ? { v: value } : [value];
      return value as Record<string, unknown>;
    };
    const error = await expectSqlState(
      enqueuePaymentOutbox(db.owner, request(`${prefix}-33`, { payload: nested(33) })),
      'P7404',
    );
    expect(error.message).toContain('deeper than 32 levels');
    // 5,000 levels (as text: too deep for JSON.stringify) reach the database the way a producer
    // would send them, and are refused the same way.
    const deep = `${'{"v":'.repeat(5000)}1${'}'.repeat(5000)}`;
    await expectSqlState(
      db.owner.query(
        `SELECT * FROM public.enqueue_payment_outbox($1, $2, $3, 'sandbox', $4::jsonb)`,
        [`${prefix}-deep`, `${prefix}-deep`, `${prefix}-deep-key`, deep],
      ),
      'P7404',
    );
    expect(
      await enqueuePaymentOutbox(db.owner, request(`${prefix}-ok`, { payload: nested(32) })),
    ).toMatchObject({ state: 'PENDING' });
  });
});

describe("the producer's trace context", () => {
  const validTraceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

  it.each([
    'not-a-traceparent',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7',
    '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
    '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01',
  ])(
    'INV-ENQUEUE-TRACEPARENT: traceparent %j is refused with P7407, single and batch',
    async (traceparent) => {
      const prefix = uniquePrefix('trace');
      const bad = request(prefix, { traceparent });
      await expectSqlState(enqueuePaymentOutbox(db.owner, bad), 'P7407');
      await expectSqlState(enqueuePaymentOutboxBatch(db.owner, [bad]), 'P7407');
    },
  );

  // The item record's own CHECK, for any writer (the enqueue functions refuse first, P7407).
  it.each([
    // 55 characters, but 31 and 17 hex digits: the dashes at 35 and 53.
    '00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g',
    '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n',
  ])(
    'INV-ENQUEUE-TRACEPARENT: the item record refuses traceparent %j written directly, with 23514',
    async (traceparent) => {
      const insertItem = (prefix: string, value: string) =>
        db.owner.query(
          `INSERT INTO public.payment_outbox_items (outbox_id, instruction_id, participant_id,
                  sequence_id, idempotency_key, rail_type, payload, payload_sha256, traceparent)
           VALUES (uuidv7(), $1, $1, 1, $1, 'sandbox', '{}',
                   encode(sha256(convert_to('{}', 'UTF8')), 'hex'), $2)`,
          [prefix, value],
        );
      // The same row with a valid traceparent is accepted: only the traceparent is refused.
      await insertItem(uniquePrefix('trace-row-ok'), validTraceparent);
      await expectSqlState(insertItem(uniquePrefix('trace-row'), traceparent), '23514');
    },
  );

  it('INV-ENQUEUE-TRACEPARENT: a valid traceparent is stored with the item and handed to the claimer', async () => {
    const prefix = uniquePrefix('trace-ok');
    const traceparent = validTraceparent;
    const { outboxId } = await enqueuePaymentOutbox(db.owner, request(prefix, { traceparent }));
    const [batched] = await enqueuePaymentOutboxBatch(db.owner, [
      request(`${prefix}-batch`, { traceparent }),
    ]);
    const claimed = await claimOutboxBatch(db.owner, {
      batchSize: 1000,
      workerId: 'tracer',
      leaseSeconds: 60,
      railTypes: ['sandbox'],
    });
    const traces = new Map(claimed.map((item) => [item.outboxId, item.traceparent]));
    expect(traces.get(outboxId)).toBe(traceparent);
    expect(traces.get(batched!.outboxId)).toBe(traceparent);
  });
});

describe('the item record', () => {
  it('INV-ITEMS-PAYLOAD-ONCE: an item retried, repaired and dispatched keeps one copy of its payload, in its item record', async () => {
    const prefix = uniquePrefix('once');
    const { outboxId } = await enqueuePaymentOutbox(db.owner, request(prefix));
    const claimAgain = async () => {
      await db.owner.query(
        `UPDATE public.payment_outbox_pending SET next_attempt_at = now() WHERE outbox_id = $1`,
        [outboxId],
      );
      const claimed = await claimOutboxBatch(db.owner, {
        batchSize: 1000,
        workerId: 'w',
        leaseSeconds: 60,
        railTypes: ['sandbox'],
      });
      const item = claimed.find((candidate) => candidate.outboxId === outboxId);
      if (!item) throw new Error('fixture could not claim');
      return item;
    };
    for (let retry = 0; retry < 3; retry += 1) {
      const item = await claimAgain();
      await completeOutboxAttempt(db.owner, 'w', {
        outboxId,
        leaseToken: item.leaseToken,
        state: 'RETRYABLE',
      });
    }
    await claimAgain();
    await db.owner.query(
      `UPDATE public.payment_outbox_pending SET lease_expires_at = now() - interval '1 second' WHERE outbox_id = $1`,
      [outboxId],
    );
    await db.owner.query(`SELECT * FROM public.repair_expired_leases(10, 'repairer')`);
    const last = await claimAgain();
    expect(last.payload).toEqual(request(prefix).payload);
    await completeOutboxAttempt(db.owner, 'w', {
      outboxId,
      leaseToken: last.leaseToken,
      state: 'DISPATCHED',
    });

    const { rows } = await db.owner.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.columns
        WHERE table_schema = 'public' AND column_name = 'payload' ORDER BY table_name`,
    );
    expect(rows.map((row) => row.table_name)).toEqual(['payment_outbox_items']);
    const { rows: ledger } = await db.owner.query<{ attempts: number; items: number; sha: string }>(
      `SELECT (SELECT count(*)::int FROM public.payment_outbox_attempts WHERE outbox_id = $1) AS attempts,
              (SELECT count(*)::int FROM public.payment_outbox_items WHERE outbox_id = $1) AS items,
              (SELECT payload_sha256 FROM public.payment_outbox_items WHERE outbox_id = $1) AS sha`,
      [outboxId],
    );
    expect(ledger[0]).toMatchObject({ attempts: 5, items: 1 });
    expect(ledger[0]?.sha).toMatch(/^[0-9a-f]{64}$/);
  });

  it.each([
    ['UPDATE', `UPDATE public.payment_outbox_items SET payload = '{}'`],
    ['DELETE', 'DELETE FROM public.payment_outbox_items'],
    ['TRUNCATE', 'TRUNCATE public.payment_outbox_items CASCADE'],
  ])(
    'INV-ITEMS-APPEND-ONLY: %s of an item record as the owner is refused with P0001',
    async (operation, sql) => {
      await enqueuePaymentOutbox(db.owner, request(uniquePrefix('frozen')));
      const error = await expectSqlState(db.owner.query(sql), 'P0001');
      expect(error.message).toMatch(/^INV-ITEMS-APPEND-ONLY: /);
      expect(error.message).toContain(operation);
    },
  );

  it('INV-ITEMS-PAYLOAD-OBJECT: an item record whose payload is not a JSON object is refused with 23514', async () => {
    await expectSqlState(
      db.owner.query(
        `INSERT INTO public.payment_outbox_items (
           outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
           payload, payload_sha256)
         VALUES (uuidv7(), 'i', 'p-array', 1, 'array-payload-key', 'sandbox', '[]', repeat('0', 64))`,
      ),
      '23514',
    );
  });
  it('INV-ITEMS-PAYLOAD-DIGEST: an item record whose payload_sha256 is not 64 lowercase hex characters is refused with 23514, by the same rule as 0020', async () => {
    const hex64 = 'ab'.repeat(32);
    const refused = [
      hex64.slice(1),
      `${hex64}0`,
      hex64.toUpperCase(),
      `${hex64.slice(1)}g`,
      `${hex64.slice(1)}\n`,
      ` ${hex64.slice(1)}`,
      '',
    ];
    // 0034 rewrote 0020's regex ^[0-9a-f]{64}$ for speed: 0020's rule refuses exactly these
    // candidates, and the live CHECK below must too.
    const { rows } = await db.owner.query<{ matches: boolean }>(
      `SELECT c ~ '^[0-9a-f]{64}$' AS matches FROM unnest($1::text[]) WITH ORDINALITY AS u(c, n) ORDER BY n`,
      [[hex64, ...refused]],
    );
    expect(rows.map((row) => row.matches)).toEqual([true, ...refused.map(() => false)]);
    for (const [index, digest] of refused.entries()) {
      const error = await expectSqlState(
        db.owner.query(
          `INSERT INTO public.payment_outbox_items (
             outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
             payload, payload_sha256)
           VALUES (uuidv7(), 'i', 'p-digest', $1, $2, 'sandbox', '{}', $3)`,
          [index + 1, uniquePrefix('bad-digest'), digest],
        ),
        '23514',
      );
      expect(error.message).toContain('ck_items_payload_sha256_hex');
    }
    const prefix = uniquePrefix('good-digest');
    await db.owner.query(
      `INSERT INTO public.payment_outbox_items (
         outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
         payload, payload_sha256)
       VALUES (uuidv7(), 'i', $1, 1, $1, 'sandbox', '{}', $2)`,
      [prefix, hex64],
    );
  });
  it('INV-PENDING-ITEM: a queued row for an item that was never enqueued is refused with 23503, inserted alone or among others, or by changing its id', async () => {
    const prefix = uniquePrefix('pending-item');
    const { rows } = await db.owner.query<{ outbox_id: string }>(
      `INSERT INTO public.payment_outbox_items (
         outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
         payload, payload_sha256)
       SELECT uuidv7(), $1 || '-' || g, $1, g, $1 || '-key-' || g, 'sandbox', '{}', repeat('0', 64)
         FROM generate_series(1, 2) AS g
       RETURNING outbox_id`,
      [prefix],
    );
    const [first, second] = rows.map((row) => row.outbox_id);
    const queue = (values: string, params: unknown[]) =>
      db.owner.query(
        `INSERT INTO public.payment_outbox_pending (outbox_id, participant_id, sequence_id, rail_type)
         VALUES ${values}`,
        params,
      );
    const alone = await expectSqlState(queue(`(uuidv7(), $1, 1, 'sandbox')`, [prefix]), '23503');
    expect(alone.message).toContain('INV-PENDING-ITEM');
    expect(alone.message).toContain('never enqueued');
    await expectSqlState(
      queue(`($1, $3, 1, 'sandbox'), (uuidv7(), $3, 9, 'sandbox'), ($2, $3, 2, 'sandbox')`, [
        first,
        second,
        prefix,
      ]),
      '23503',
    );
    const queued = () =>
      db.owner.query(
        'SELECT outbox_id FROM public.payment_outbox_pending WHERE outbox_id = ANY ($1)',
        [[first, second]],
      );
    expect((await queued()).rows).toEqual([]);
    await queue(`($1, $2, 1, 'sandbox')`, [first, prefix]);
    await expectSqlState(
      db.owner.query(
        'UPDATE public.payment_outbox_pending SET outbox_id = uuidv7() WHERE outbox_id = $1',
        [first],
      ),
      '23503',
    );
    expect((await queued()).rows).toEqual([{ outbox_id: first }]);
  });
});
