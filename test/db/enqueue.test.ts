import { describe, expect, it } from 'vitest';
import {
  claimOutboxBatch,
  completeOutboxAttempt,
  enqueuePaymentOutbox,
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
    payload: { amount: '10.00', currency: 'ZMW' },
    ...overrides,
  };
}

async function nextSequenceOf(participantId: string): Promise<string | undefined> {
  const { rows } = await db.owner.query<{ next_sequence_id: string }>(
    'SELECT next_sequence_id FROM public.participant_outbox_sequences WHERE participant_id = $1',
    [participantId],
  );
  return rows[0]?.next_sequence_id;
}

describe('enqueue_payment_outbox', () => {
  it('INV-ENQUEUE-IDEMPOTENT: the same (instruction, key) from 8 concurrent connections yields one row and one outbox_id', async () => {
    const same = request(uniquePrefix('idem'));
    const results = await Promise.all(clients.map((client) => enqueuePaymentOutbox(client, same)));

    expect(new Set(results.map((result) => result.outboxId)).size).toBe(1);
    expect(new Set(results.map((result) => result.sequenceId))).toEqual(new Set(['1']));
    expect(results.every((result) => result.state === 'PENDING')).toBe(true);
    const { rows } = await db.owner.query<{ n: string }>(
      'SELECT count(*) AS n FROM public.payment_outbox_pending WHERE instruction_id = $1 AND idempotency_key = $2',
      [same.instructionId, same.idempotencyKey],
    );
    expect(rows[0]?.n).toBe('1');
    // A duplicate never consumes a sequence number.
    expect(await nextSequenceOf(same.participantId)).toBe('2');
  });

  it('INV-ENQUEUE-SEQUENCE-GAPLESS: 8 connections x 25 enqueues for 2 participants give each participant 1..N exactly once', async () => {
    const prefix = uniquePrefix('seq');
    const participants = [`${prefix}-a`, `${prefix}-b`];
    await Promise.all(
      clients.map(async (client, connection) => {
        for (let i = 0; i < 25; i += 1) {
          await enqueuePaymentOutbox(
            client,
            request(`${prefix}-${connection}-${i}`, {
              participantId: participants[(connection + i) % 2],
            }),
          );
        }
      }),
    );

    for (const participantId of participants) {
      const { rows } = await db.owner.query<{ sequence_id: string }>(
        'SELECT sequence_id FROM public.payment_outbox_pending WHERE participant_id = $1 ORDER BY sequence_id',
        [participantId],
      );
      const expected = Array.from({ length: 100 }, (_, index) => String(index + 1));
      expect(rows.map((row) => row.sequence_id)).toEqual(expected);
    }
  });

  it('INV-PENDING-PAYLOAD-OBJECT: a non-object payload is refused with 23514 and consumes no sequence number', async () => {
    const prefix = uniquePrefix('payload');
    const participantId = `${prefix}-participant`;
    await enqueuePaymentOutbox(db.owner, request(`${prefix}-ok`, { participantId }));
    for (const payload of ['[1, 2]', '"text"', '42', 'null']) {
      await expectSqlState(
        db.owner.query(
          `SELECT * FROM public.enqueue_payment_outbox($1, $2, $3, 'sandbox', $4::jsonb)`,
          [`${prefix}-bad`, participantId, `${prefix}-bad-key`, payload],
        ),
        '23514',
      );
    }
    // The wrapper serialises the payload as JSON, so an array reaches the CHECK too.
    await expectSqlState(
      enqueuePaymentOutbox(
        db.owner,
        request(`${prefix}-array`, {
          participantId,
          payload: [1, 2] as unknown as Record<string, unknown>,
        }),
      ),
      '23514',
    );
    expect(await nextSequenceOf(participantId)).toBe('2');
  });

  it('a repeated enqueue of a queued item returns it as PENDING', async () => {
    const same = request(uniquePrefix('repeat'));
    const first = await enqueuePaymentOutbox(db.owner, same);
    const second = await enqueuePaymentOutbox(db.owner, { ...same, payload: { changed: true } });
    expect(second).toEqual(first);
  });

  it.each(['DISPATCHED', 'FAILED'] as const)(
    'INV-ENQUEUE-IDEMPOTENT-AFTER-TERMINAL: re-enqueueing a %s item returns its terminal state and creates nothing',
    async (terminal) => {
      const same = request(uniquePrefix(`done-${terminal}`));
      const first = await enqueuePaymentOutbox(db.owner, same);
      const worker = `worker-${terminal}`;
      const claimed = await claimOutboxBatch(db.owner, {
        batchSize: 1000,
        workerId: worker,
        leaseSeconds: 60,
      });
      const item = claimed.find((candidate) => candidate.outboxId === first.outboxId);
      expect(item).toBeDefined();
      await completeOutboxAttempt(db.owner, worker, {
        outboxId: first.outboxId,
        leaseToken: item?.leaseToken ?? '',
        state: terminal,
      });

      const again = await enqueuePaymentOutbox(db.owner, same);
      expect(again).toMatchObject({
        outboxId: first.outboxId,
        sequenceId: first.sequenceId,
        state: terminal,
      });
      // With no pending row left, the enqueue time comes from the uuidv7 id: written during
      // the first enqueue, so not before its transaction began (first.createdAt, now()).
      const { rows: idTime } = await db.owner.query<{ at: Date }>(
        'SELECT uuid_extract_timestamp($1::uuid) AS at',
        [first.outboxId],
      );
      expect(again.createdAt).toEqual(idTime[0]?.at);
      expect(again.createdAt.getTime()).toBeGreaterThanOrEqual(first.createdAt.getTime());
      const { rows } = await db.owner.query<{ n: string }>(
        'SELECT count(*) AS n FROM public.payment_outbox_pending WHERE instruction_id = $1',
        [same.instructionId],
      );
      expect(rows[0]?.n).toBe('0');
      expect(await nextSequenceOf(same.participantId)).toBe('2');
    },
  );
});
