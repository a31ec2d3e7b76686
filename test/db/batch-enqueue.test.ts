import { describe, expect, it } from 'vitest';
import {
  claimOutboxBatch,
  completeOutboxAttempt,
  enqueuePaymentOutbox,
  enqueuePaymentOutboxBatch,
  type EnqueueRequest,
} from '../../src/db/outbox.ts';
import { outboxTestBed, queueBulk, uniquePrefix } from '../support/outbox-fixtures.ts';
import { connectAsEach, RUNTIME_ROLES } from '../support/role-boundaries.ts';
import { expectSqlState } from '../support/sqlstate.ts';
import { explainedPlans, scansWhole } from '../support/statement-plans.ts';

const { db, clients } = await outboxTestBed({ connections: 8 });
const as = await connectAsEach(db, RUNTIME_ROLES);

function request(
  prefix: string,
  key: string,
  overrides: Partial<EnqueueRequest> = {},
): EnqueueRequest {
  return {
    instructionId: `${prefix}-instruction-${key}`,
    participantId: `${prefix}-participant`,
    idempotencyKey: `${prefix}-key-${key}`,
    railType: 'sandbox',
    payload: { amount: '10.00', currency: 'ZMW', key },
    ...overrides,
  };
}

async function sequencesOf(participantId: string): Promise<string[]> {
  const { rows } = await db.owner.query<{ sequence_id: string }>(
    'SELECT sequence_id FROM public.payment_outbox_pending WHERE participant_id = $1 ORDER BY sequence_id',
    [participantId],
  );
  return rows.map((row) => row.sequence_id);
}

async function nextSequenceOf(participantId: string): Promise<string | undefined> {
  const { rows } = await db.owner.query<{ next_sequence_id: string }>(
    'SELECT next_sequence_id FROM public.participant_outbox_sequences WHERE participant_id = $1',
    [participantId],
  );
  return rows[0]?.next_sequence_id;
}

const oneToN = (n: number) => Array.from({ length: n }, (_, index) => String(index + 1));

describe('enqueue_payment_outbox_batch', () => {
  it('INV-ENQUEUE-BATCH-IDEMPOTENT-GAPLESS: 8 concurrent batch enqueues (and single enqueues) with overlapping keys give one row per key and gap-free sequences per participant', async () => {
    const prefix = uniquePrefix('batch-race');
    const participants = [`${prefix}-a`, `${prefix}-b`, `${prefix}-c`];
    const KEYS = 90;
    const requestFor = (key: number) =>
      request(prefix, String(key), { participantId: participants[key % participants.length] });
    // Each connection sends 50 of the 90 keys, starting at a different offset and, on odd
    // connections, in reverse: every key is contested, and in different orders.
    const batches = clients.map((_, connection) => {
      const keys = Array.from({ length: 50 }, (_, i) => (connection * 11 + i) % KEYS);
      return (connection % 2 === 0 ? keys : keys.reverse()).map(requestFor);
    });

    const results = await Promise.all(
      clients.map(async (client, connection) => {
        if (connection < 6) return enqueuePaymentOutboxBatch(client, batches[connection]!);
        // Two connections race the batches with the single function, key by key.
        const singles = [];
        for (const item of batches[connection]!) {
          singles.push(await enqueuePaymentOutbox(client, item));
        }
        return singles;
      }),
    );

    const outboxIdByKey = new Map<string, string>();
    results.forEach((perConnection, connection) => {
      expect(perConnection).toHaveLength(50);
      perConnection.forEach((result, index) => {
        const key = batches[connection]![index]!.idempotencyKey;
        expect(result.state).toBe('PENDING');
        const seen = outboxIdByKey.get(key);
        if (seen) expect(result.outboxId).toBe(seen);
        else outboxIdByKey.set(key, result.outboxId);
      });
    });
    const { rows } = await db.owner.query<{ n: string }>(
      `SELECT count(*) AS n FROM public.payment_outbox_items WHERE instruction_id LIKE $1 || '%'`,
      [prefix],
    );
    expect(rows[0]?.n).toBe(String(outboxIdByKey.size));
    const covered = new Set(batches.flat().map((item) => item.idempotencyKey));
    expect(outboxIdByKey.size).toBe(covered.size);
    for (const participantId of participants) {
      const sequences = await sequencesOf(participantId);
      expect(sequences).toEqual(oneToN(sequences.length));
      expect(await nextSequenceOf(participantId)).toBe(String(sequences.length + 1));
    }
  });

  it('INV-ENQUEUE-BATCH-EXISTING: a batch mixing fresh, queued, finished and repeated keys returns one row per item in input order and numbers only the fresh ones', async () => {
    const prefix = uniquePrefix('batch-mixed');
    const participantId = `${prefix}-participant`;
    const queued = await enqueuePaymentOutbox(db.owner, request(prefix, 'queued'));
    const delivered = await enqueuePaymentOutbox(db.owner, request(prefix, 'delivered'));
    const rejected = await enqueuePaymentOutbox(db.owner, request(prefix, 'rejected'));
    const claimed = await claimOutboxBatch(db.owner, {
      batchSize: 1000,
      workerId: 'finisher',
      leaseSeconds: 60,
      railTypes: ['sandbox'],
    });
    const toFinish = [delivered.outboxId, rejected.outboxId];
    for (const item of claimed.filter((candidate) => toFinish.includes(candidate.outboxId))) {
      await completeOutboxAttempt(db.owner, 'finisher', {
        outboxId: item.outboxId,
        leaseToken: item.leaseToken,
        state: item.outboxId === delivered.outboxId ? 'DISPATCHED' : 'FAILED',
        errorCode: 'REJECTED',
      });
    }

    const results = await enqueuePaymentOutboxBatch(db.owner, [
      request(prefix, 'fresh-1'),
      request(prefix, 'queued'),
      request(prefix, 'delivered'),
      request(prefix, 'fresh-2'),
      request(prefix, 'rejected'),
      request(prefix, 'fresh-1'),
    ]);

    expect(
      results.map(({ outboxId, sequenceId, state }) => ({ outboxId, sequenceId, state })),
    ).toEqual([
      { outboxId: results[0]!.outboxId, sequenceId: '4', state: 'PENDING' },
      { outboxId: queued.outboxId, sequenceId: '1', state: 'PENDING' },
      { outboxId: delivered.outboxId, sequenceId: '2', state: 'DISPATCHED' },
      { outboxId: results[3]!.outboxId, sequenceId: '5', state: 'PENDING' },
      { outboxId: rejected.outboxId, sequenceId: '3', state: 'FAILED' },
      { outboxId: results[0]!.outboxId, sequenceId: '4', state: 'PENDING' },
    ]);
    expect(results[2]!.createdAt.getTime()).toBeLessThanOrEqual(results[0]!.createdAt.getTime());
    expect(await nextSequenceOf(participantId)).toBe('6');
    expect(await sequencesOf(participantId)).toEqual(['1', '4', '5']);

    // The same key with different content is another payment: refused, nothing changes.
    await expectSqlState(
      enqueuePaymentOutboxBatch(db.owner, [
        request(prefix, 'fresh-3'),
        request(prefix, 'fresh-1', { payload: { different: 'payload, same key' } }),
      ]),
      'P7402',
    );
    expect(await nextSequenceOf(participantId)).toBe('6');

    // The same batch again is a no-op returning the same rows.
    const again = await enqueuePaymentOutboxBatch(db.owner, [
      request(prefix, 'fresh-1'),
      request(prefix, 'fresh-2'),
    ]);
    expect(again.map((result) => result.outboxId)).toEqual([
      results[0]!.outboxId,
      results[3]!.outboxId,
    ]);
    expect(await nextSequenceOf(participantId)).toBe('6');
  });

  it('an all-new batch (participants interleaved, a key repeated) returns what its item and pending rows hold: ids drawn and each participant numbered in input order', async () => {
    const prefix = uniquePrefix('batch-all-new');
    const alice = { participantId: `${prefix}-alice` };
    const bob = { participantId: `${prefix}-bob` };
    const results = await enqueuePaymentOutboxBatch(db.owner, [
      request(prefix, 'a1', alice),
      request(prefix, 'b1', bob),
      request(prefix, 'a2', alice),
      request(prefix, 'a1', alice),
      request(prefix, 'b2', bob),
      request(prefix, 'a3', alice),
    ]);

    expect(results.map(({ sequenceId, state }) => ({ sequenceId, state }))).toEqual([
      { sequenceId: '1', state: 'PENDING' },
      { sequenceId: '1', state: 'PENDING' },
      { sequenceId: '2', state: 'PENDING' },
      { sequenceId: '1', state: 'PENDING' },
      { sequenceId: '2', state: 'PENDING' },
      { sequenceId: '3', state: 'PENDING' },
    ]);
    // The repeated key is the first occurrence's item; the others are new, in input order.
    expect(results[3]!.outboxId).toBe(results[0]!.outboxId);
    const firsts = [0, 1, 2, 4, 5].map((index) => results[index]!.outboxId);
    expect([...firsts].sort()).toEqual(firsts);
    expect(new Set(firsts).size).toBe(5);

    const { rows } = await db.owner.query<{
      outbox_id: string;
      sequence_id: string;
      created_at: Date;
      pending_sequence_id: string | null;
      pending_created_at: Date | null;
    }>(
      `SELECT i.outbox_id, i.sequence_id, i.created_at,
              p.sequence_id AS pending_sequence_id, p.created_at AS pending_created_at
         FROM public.payment_outbox_items i
         LEFT JOIN public.payment_outbox_pending p ON p.outbox_id = i.outbox_id
        WHERE i.outbox_id = ANY($1::uuid[])`,
      [firsts],
    );
    const stored = new Map(rows.map((row) => [row.outbox_id, row]));
    for (const result of results) {
      const row = stored.get(result.outboxId);
      expect(row?.sequence_id).toBe(result.sequenceId);
      expect(row?.pending_sequence_id).toBe(result.sequenceId);
      expect(row?.created_at.getTime()).toBe(result.createdAt.getTime());
      expect(row?.pending_created_at?.getTime()).toBe(result.createdAt.getTime());
    }
    expect(await nextSequenceOf(alice.participantId)).toBe('4');
    expect(await nextSequenceOf(bob.participantId)).toBe('3');
  });

  it('INV-ENQUEUE-BATCH-PAYLOAD-OBJECT: a non-object payload anywhere refuses the whole batch with 23514 and consumes no sequence number', async () => {
    const prefix = uniquePrefix('batch-payload');
    const participantId = `${prefix}-participant`;
    await enqueuePaymentOutbox(db.owner, request(prefix, 'existing'));
    for (const payload of [[1, 2], 'text', 42, null]) {
      await expectSqlState(
        enqueuePaymentOutboxBatch(db.owner, [
          request(prefix, 'good'),
          request(prefix, 'bad', { payload: payload as unknown as Record<string, unknown> }),
        ]),
        '23514',
      );
    }
    // A missing payload is refused as missing.
    await expectSqlState(
      db.owner.query('SELECT * FROM public.enqueue_payment_outbox_batch($1::jsonb)', [
        JSON.stringify([
          {
            instruction_id: 'i',
            participant_id: participantId,
            idempotency_key: 'k',
            rail_type: 'sandbox',
          },
        ]),
      ]),
      '23502',
    );
    expect(await sequencesOf(participantId)).toEqual(['1']);
    expect(await nextSequenceOf(participantId)).toBe('2');
  });

  it('refuses a p_items that is not an array of objects with 22023, and a missing field with 23502', async () => {
    for (const items of ['{}', '"x"', '[1]']) {
      await expectSqlState(
        db.owner.query('SELECT * FROM public.enqueue_payment_outbox_batch($1::jsonb)', [items]),
        '22023',
      );
    }
    await expectSqlState(
      db.owner.query('SELECT * FROM public.enqueue_payment_outbox_batch($1::jsonb)', [
        JSON.stringify([
          { instruction_id: 'i', participant_id: 'p', idempotency_key: 'k', payload: {} },
        ]),
      ]),
      '23502',
    );
    expect(await enqueuePaymentOutboxBatch(db.owner, [])).toEqual([]);
  });

  describe('privileges', () => {
    it('INV-PRIV-BATCH-ENQUEUE-INGEST-ONLY: only ingest may call enqueue_payment_outbox_batch; the executor and every other runtime role get 42501', async () => {
      const prefix = uniquePrefix('batch-priv');
      for (const role of RUNTIME_ROLES.filter((candidate) => candidate !== 'symphony_ingest')) {
        await expectSqlState(enqueuePaymentOutboxBatch(as[role], [request(prefix, role)]), '42501');
      }
      expect(await sequencesOf(`${prefix}-participant`)).toEqual([]);
      expect(
        await enqueuePaymentOutboxBatch(as.symphony_ingest, [request(prefix, 'ingest')]),
      ).toMatchObject([{ sequenceId: '1', state: 'PENDING' }]);
    });
  });
});

describe('enqueue plans at size', () => {
  it('INV-ENQUEUE-PLAN-ON-INDEXES: with 20k items in the record, batch and single enqueues of fresh and stored keys find every key through an index, custom and generic plans alike: no statement reads the item record or the queue whole (auto_explain of the nested statements)', async () => {
    const prefix = uniquePrefix('plans');
    await queueBulk(db.owner, 20_000, { railType: 'sandbox', secondsFromNow: 3600, prefix });
    const stored = oneToN(3).map((key) => request(prefix, `stored-${key}`));
    await enqueuePaymentOutboxBatch(db.owner, stored);
    await db.owner.query('ANALYZE public.payment_outbox_items, public.payment_outbox_pending');
    const client = clients[0]!;
    // Six calls of each kind: PL/pgSQL plans a statement afresh five times, then may settle
    // on a generic plan.
    const plans = await explainedPlans(client, async () => {
      for (let call = 0; call < 6; call += 1) {
        const fresh = oneToN(200).map((key) => request(prefix, `fresh-${call}-${key}`));
        await enqueuePaymentOutboxBatch(client, fresh);
        await enqueuePaymentOutboxBatch(client, [
          ...oneToN(20).map((key) => request(prefix, `mixed-${call}-${key}`)),
          ...stored,
        ]);
        await enqueuePaymentOutbox(client, request(prefix, `single-${call}`));
        await enqueuePaymentOutbox(client, stored[call % stored.length]!);
      }
    });
    const nested = plans.filter((plan) => !plan.includes('FROM public.enqueue_payment_outbox'));
    // The batch's look-up of stored keys, and the replays' look-up of each key's item.
    expect(nested.filter((plan) => plan.includes('i.legacy_key_reuse')).length).toBeGreaterThan(12);
    expect(nested.filter(scansWhole)).toEqual([]);
  });
});
