/**
 * 0019–0021 on a database filled under the old schema (0001–0018): every queued and
 * finished item moves into the item record without loss, the ledger keeps every attempt,
 * keys reused before the rule existed are grandfathered, and the queue keeps flowing.
 */
import { copyFile, mkdtemp, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { MIGRATIONS_DIR } from '../../../src/db/migrate/files.ts';
import { migrate } from '../../../src/db/migrate/runner.ts';
import {
  claimOutboxBatch,
  completeOutboxAttempt,
  enqueuePaymentOutbox,
  enqueuePaymentOutboxBatch,
} from '../../../src/db/outbox.ts';
import { freshDatabase } from '../../support/database.ts';
import { expectSqlState } from '../../support/sqlstate.ts';

const LAST_OLD_SCHEMA = '0018';

async function oldSchemaDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'symphony-old-schema-'));
  for (const file of await readdir(MIGRATIONS_DIR)) {
    if (file.endsWith('.sql') && file.slice(0, 4) <= LAST_OLD_SCHEMA) {
      await copyFile(path.join(MIGRATIONS_DIR, file), path.join(dir, file));
    }
  }
  return dir;
}

it('INV-ITEMS-UPGRADE-LOSSLESS: items queued, retried, repaired and finished under 0018 move into the item record without loss', async () => {
  const db = await freshDatabase({ empty: true });
  await migrate(db.ownerUrl, { dir: await oldSchemaDir() });
  const sql = db.owner;

  // Under the old schema: alice and bob share a key (the bug the new rule prevents).
  const enqueue = async (instruction: string, participant: string, key: string, amount: number) =>
    (
      await sql.query<{ outbox_id: string }>(
        `SELECT outbox_id FROM public.enqueue_payment_outbox($1, $2, $3, 'sandbox', $4::jsonb)`,
        [instruction, participant, key, JSON.stringify({ amount, to: instruction })],
      )
    ).rows[0]!.outbox_id;
  const alice = await enqueue('pay-alice', 'pp-1', 'INV-0001', 100);
  const bob = await enqueue('pay-bob', 'pp-2', 'INV-0001', 5000);
  const carol = await enqueue('pay-carol', 'pp-1', 'INV-0003', 7);
  const dave = await enqueue('pay-dave', 'pp-1', 'INV-0004', 9);
  const claimed = await sql.query<{ outbox_id: string; lease_token: string }>(
    `SELECT outbox_id, lease_token FROM public.claim_outbox_batch(10, 'old-worker', 60)`,
  );
  const token = (id: string) => claimed.rows.find((row) => row.outbox_id === id)!.lease_token;
  const complete = (id: string, state: string, reference: string | null) =>
    sql.query(
      `SELECT * FROM public.complete_outbox_attempt($1, $2, 'old-worker', $3::public.outbox_attempt_state, $4)`,
      [id, token(id), state, reference],
    );
  await complete(alice, 'DISPATCHED', 'ref-alice');
  await complete(bob, 'DISPATCHED', 'ref-bob');
  await complete(carol, 'RETRYABLE', null);
  await sql.query(
    `UPDATE public.payment_outbox_pending SET lease_expires_at = now() - interval '1 second' WHERE outbox_id = $1`,
    [dave],
  );
  await sql.query(`SELECT * FROM public.repair_expired_leases(10, 'old-repairer')`);

  const itemsBefore = await sql.query(
    `SELECT DISTINCT ON (outbox_id) outbox_id, instruction_id, participant_id, sequence_id,
            idempotency_key, rail_type, payload
       FROM (SELECT outbox_id, instruction_id, participant_id, sequence_id, idempotency_key,
                    rail_type, payload FROM public.payment_outbox_attempts
             UNION ALL
             SELECT outbox_id, instruction_id, participant_id, sequence_id, idempotency_key,
                    rail_type, payload FROM public.payment_outbox_pending) x
      ORDER BY outbox_id`,
  );
  const ledgerQuery = `SELECT attempt_id, outbox_id, attempt_no, state::text AS state, worker_id,
                              rail_reference, error_code, claimed_at, completed_at
                         FROM public.payment_outbox_attempts ORDER BY attempt_id`;
  const ledgerBefore = await sql.query(ledgerQuery);
  expect(itemsBefore.rows).toHaveLength(4);
  expect(ledgerBefore.rows).toHaveLength(4);

  const upgraded = await migrate(db.ownerUrl);
  expect(upgraded.applied[0]).toMatch(/^0019_/);

  const itemsAfter = await sql.query(
    `SELECT outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
            payload
       FROM public.payment_outbox_items ORDER BY outbox_id`,
  );
  expect(itemsAfter.rows).toEqual(itemsBefore.rows);
  expect((await sql.query(ledgerQuery)).rows).toEqual(ledgerBefore.rows);
  const { rows: reuse } = await sql.query<{ instruction_id: string; legacy_key_reuse: boolean }>(
    `SELECT instruction_id, legacy_key_reuse FROM public.payment_outbox_items
      WHERE idempotency_key = 'INV-0001' ORDER BY instruction_id`,
  );
  expect(reuse).toEqual([
    { instruction_id: 'pay-alice', legacy_key_reuse: false },
    { instruction_id: 'pay-bob', legacy_key_reuse: true },
  ]);

  // Replays of both old items still answer; a new instruction cannot take the key.
  const replay = (instructionId: string, participantId: string, amount: number) =>
    enqueuePaymentOutbox(sql, {
      instructionId,
      participantId,
      idempotencyKey: 'INV-0001',
      railType: 'sandbox',
      payload: { amount, to: instructionId },
    });
  expect(await replay('pay-alice', 'pp-1', 100)).toMatchObject({
    outboxId: alice,
    state: 'DISPATCHED',
  });
  expect(await replay('pay-bob', 'pp-2', 5000)).toMatchObject({
    outboxId: bob,
    state: 'DISPATCHED',
  });
  await expectSqlState(replay('pay-eve', 'pp-3', 1), 'P7401');
  // The same through batches (one payment per key within a batch): the stored key is found
  // whether its item is the key's owner or a grandfathered re-user.
  const request = (instructionId: string, participantId: string, amount: number) => ({
    instructionId,
    participantId,
    idempotencyKey: 'INV-0001',
    railType: 'sandbox',
    payload: { amount, to: instructionId },
  });
  expect(await enqueuePaymentOutboxBatch(sql, [request('pay-bob', 'pp-2', 5000)])).toMatchObject([
    { outboxId: bob, state: 'DISPATCHED' },
  ]);
  expect(await enqueuePaymentOutboxBatch(sql, [request('pay-alice', 'pp-1', 100)])).toMatchObject([
    { outboxId: alice, state: 'DISPATCHED' },
  ]);
  await expectSqlState(enqueuePaymentOutboxBatch(sql, [request('pay-eve', 'pp-3', 1)]), 'P7401');

  // The queue flows on: carol (retry scheduled) and dave (requeued by repair) are delivered.
  await sql.query('UPDATE public.payment_outbox_pending SET next_attempt_at = now()');
  const reclaimed = await claimOutboxBatch(sql, {
    batchSize: 10,
    workerId: 'new-worker',
    leaseSeconds: 60,
    railTypes: ['sandbox'],
  });
  expect(reclaimed.map((item) => item.instructionId).sort()).toEqual(['pay-carol', 'pay-dave']);
  for (const item of reclaimed) {
    expect(item.payload).toEqual({
      amount: item.instructionId === 'pay-carol' ? 7 : 9,
      to: item.instructionId,
    });
    await completeOutboxAttempt(sql, 'new-worker', {
      outboxId: item.outboxId,
      leaseToken: item.leaseToken,
      state: 'DISPATCHED',
    });
  }
  const { rows: attempts } = await sql.query<{ outbox_id: string; states: string[] }>(
    `SELECT outbox_id, array_agg(state::text ORDER BY attempt_no) AS states
       FROM public.payment_outbox_attempts GROUP BY outbox_id`,
  );
  const statesOf = new Map(attempts.map((row) => [row.outbox_id, row.states]));
  expect(statesOf.get(carol)).toEqual(['RETRYABLE', 'DISPATCHED']);
  expect(statesOf.get(dave)).toEqual(['ZOMBIE_REQUEUE', 'DISPATCHED']);
  expect((await sql.query('SELECT 1 FROM public.payment_outbox_pending')).rowCount).toBe(0);
});
