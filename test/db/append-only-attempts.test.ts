import { beforeAll, describe, expect, it } from 'vitest';
import { completeOutboxAttempt } from '../../src/db/outbox.ts';
import { freshDatabase } from '../support/database.ts';
import { enqueueAndClaim, readAttempts } from '../support/outbox-fixtures.ts';
import { expectSqlState } from '../support/sqlstate.ts';

// Runs as the owner, which holds every table privilege: the trigger is what refuses.
const db = await freshDatabase();
let outboxId = '';

beforeAll(async () => {
  const [item] = await enqueueAndClaim(db.owner, 1, { workerId: 'w' });
  if (!item) throw new Error('fixture claimed nothing');
  outboxId = item.outboxId;
  await completeOutboxAttempt(db.owner, 'w', {
    outboxId,
    leaseToken: item.leaseToken,
    state: 'DISPATCHED',
  });
});

describe('payment_outbox_attempts refuses every change to history', () => {
  it.each([
    ['UPDATE', `UPDATE public.payment_outbox_attempts SET state = 'FAILED'`],
    ['DELETE', 'DELETE FROM public.payment_outbox_attempts'],
    ['TRUNCATE', 'TRUNCATE public.payment_outbox_attempts'],
  ])('INV-ATTEMPTS-APPEND-ONLY: %s as the owner is refused with P0001', async (operation, sql) => {
    const error = await expectSqlState(db.owner.query(sql), 'P0001');
    expect(error.message).toMatch(/^INV-ATTEMPTS-APPEND-ONLY: /);
    expect(error.message).toContain(operation);
    expect(await readAttempts(db.owner, [outboxId])).toMatchObject([{ state: 'DISPATCHED' }]);
  });
});

describe('attempt row constraints', () => {
  it('INV-ATTEMPTS-NO-DISPATCHING: an attempt with state DISPATCHING is refused with 23514', async () => {
    await expectSqlState(
      db.owner.query(
        `INSERT INTO public.payment_outbox_attempts (outbox_id, attempt_no, state)
         VALUES ($1, 2, 'DISPATCHING')`,
        [outboxId],
      ),
      '23514',
    );
  });

  it('INV-ATTEMPTS-ITEM-FK: an attempt for an item that was never enqueued is refused with 23503, and a statement with one such attempt among others records none of them', async () => {
    const error = await expectSqlState(
      db.owner.query(
        `INSERT INTO public.payment_outbox_attempts (outbox_id, attempt_no, state)
         VALUES (uuidv7(), 1, 'FAILED')`,
      ),
      '23503',
    );
    expect(error.message).toContain('INV-ATTEMPTS-ITEM-FK');
    expect(error.message).toContain('never enqueued');
    const before = await readAttempts(db.owner, [outboxId]);
    await expectSqlState(
      db.owner.query(
        `INSERT INTO public.payment_outbox_attempts (outbox_id, attempt_no, state)
         VALUES ($1, 90, 'RETRYABLE'), (uuidv7(), 1, 'FAILED'), ($1, 91, 'RETRYABLE')`,
        [outboxId],
      ),
      '23503',
    );
    expect(await readAttempts(db.owner, [outboxId])).toEqual(before);
  });

  it('INV-ATTEMPTS-NO-PAYLOAD: an attempt row holds the facts of the attempt, never the payload', async () => {
    const { rows } = await db.owner.query<{ column_name: string }>(
      `SELECT column_name FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = 'payment_outbox_attempts'
        ORDER BY ordinal_position`,
    );
    const columns = rows.map((row) => row.column_name);
    for (const copied of ['payload', 'instruction_id', 'idempotency_key', 'rail_type']) {
      expect(columns).not.toContain(copied);
    }
    expect(columns).toContain('outbox_id');
  });
});
