import { beforeEach, describe, expect, it } from 'vitest';
import type pg from 'pg';
import {
  enqueuePaymentOutbox,
  enqueuePaymentOutboxBatch,
  releaseOutboxLeases,
} from '../../src/db/outbox.ts';
import { NotificationRecorder } from '../support/notification-recorder.ts';
import {
  enqueueAndClaim,
  enqueueItems,
  outboxTestBed,
  uniquePrefix,
} from '../support/outbox-fixtures.ts';

const CHANNEL = 'outbox_pending';
const bed = await outboxTestBed({ connections: 3 });
const db = bed.db;
const [listener, writer, prober] = [bed.client(0), bed.client(1), bed.client(2)];
const recorder = await NotificationRecorder.listen(listener, CHANNEL);

beforeEach(async () => {
  await recorder.sync(prober);
  recorder.clear();
});

function enqueueOne(client: pg.Client) {
  const prefix = uniquePrefix('notify');
  return enqueuePaymentOutbox(client, {
    instructionId: `${prefix}-instruction`,
    participantId: `${prefix}-participant`,
    idempotencyKey: `${prefix}-key`,
    railType: 'sandbox',
    payload: { a: 1 },
  });
}

describe('NOTIFY outbox_pending wakes workers when work is committed', () => {
  it('INV-NOTIFY-ON-COMMIT: nothing before commit, one empty-payload notification after it', async () => {
    await writer.query('BEGIN');
    try {
      await enqueueOne(writer);
      await recorder.sync(prober);
      expect(recorder.on(CHANNEL)).toEqual([]);
    } finally {
      await writer.query('COMMIT');
    }
    await recorder.waitFor(() => recorder.on(CHANNEL).length > 0);
    expect(recorder.on(CHANNEL)).toEqual([{ channel: CHANNEL, payload: '' }]);
  });

  it('INV-NOTIFY-ON-COMMIT: nothing when the enqueueing transaction rolls back', async () => {
    await writer.query('BEGIN');
    await enqueueOne(writer);
    await writer.query('ROLLBACK');
    await recorder.sync(prober);
    expect(recorder.on(CHANNEL)).toEqual([]);
  });

  it('INV-NOTIFY-ON-COMMIT: a 50-row batch enqueue fires the statement trigger once and notifies once', async () => {
    // Identical notifications in one transaction are folded at commit, so the count of
    // notifications alone cannot tell a statement trigger from a row trigger: the trigger
    // function's own call count in this transaction can (track_functions, set as the owner).
    const prefix = uniquePrefix('notify-batch');
    await writer.query('BEGIN');
    try {
      await writer.query(`SET LOCAL track_functions = 'pl'`);
      const results = await enqueuePaymentOutboxBatch(
        writer,
        Array.from({ length: 50 }, (_, n) => ({
          instructionId: `${prefix}-${n}`,
          participantId: `${prefix}-participant`,
          idempotencyKey: `${prefix}-key-${n}`,
          railType: 'sandbox',
          payload: { n },
        })),
      );
      expect(results).toHaveLength(50);
      const { rows } = await writer.query<{ calls: string }>(
        `SELECT pg_stat_get_xact_function_calls('public.notify_outbox_pending'::regproc) AS calls`,
      );
      expect(rows[0]?.calls).toBe('1');
    } finally {
      await writer.query('COMMIT');
    }
    await recorder.sync(prober);
    expect(recorder.on(CHANNEL)).toEqual([{ channel: CHANNEL, payload: '' }]);
  });

  it('INV-NOTIFY-ON-COMMIT: several enqueueing statements in one transaction notify once, at commit', async () => {
    await enqueueItems(writer, 50);
    await recorder.sync(prober);
    expect(recorder.on(CHANNEL)).toHaveLength(1);
  });

  it('a statement that inserts no rows does not notify', async () => {
    await writer.query(
      `INSERT INTO public.payment_outbox_pending (outbox_id, participant_id, sequence_id, rail_type)
       SELECT uuidv7(), 'never', 1, 'sandbox' WHERE false`,
    );
    await recorder.sync(prober);
    expect(recorder.on(CHANNEL)).toEqual([]);
  });

  it('releasing leases wakes other workers once; a release that frees nothing does not', async () => {
    await db.owner.query('TRUNCATE public.payment_outbox_pending');
    const items = await enqueueAndClaim(writer, 3, { workerId: 'leaving' });
    await recorder.sync(prober);
    recorder.clear();

    await releaseOutboxLeases(writer, 'leaving', items);
    await recorder.sync(prober);
    expect(recorder.on(CHANNEL)).toEqual([{ channel: CHANNEL, payload: '' }]);

    recorder.clear();
    await releaseOutboxLeases(writer, 'leaving', items);
    await recorder.sync(prober);
    expect(recorder.on(CHANNEL)).toEqual([]);
  });
});
