import { beforeAll, describe, expect, it } from 'vitest';
import { completeOutboxAttempt } from '../../src/db/outbox.ts';
import { runCli } from '../support/cli.ts';
import { freshDatabase } from '../support/database.ts';
import {
  enqueueAndClaim,
  enqueueItems,
  expireLeases,
  uniquePrefix,
} from '../support/outbox-fixtures.ts';

const db = await freshDatabase();
const reader = await db.createLoginRole(['symphony_readonly']);
const WORKER = 'status-test-worker';

/**
 * A known queue: 3 due items, 1 under a live lease, 1 under an expired lease (awaiting
 * repair, so neither due nor claimable), and a ledger with one DISPATCHED and one FAILED
 * attempt this hour plus one DISPATCHED attempt from two hours ago.
 */
beforeAll(async () => {
  const [delivered, refused] = await enqueueAndClaim(db.owner, 2, { workerId: WORKER });
  if (!delivered || !refused) throw new Error('fixture: expected two claimed items');
  await completeOutboxAttempt(db.owner, WORKER, {
    outboxId: delivered.outboxId,
    leaseToken: delivered.leaseToken,
    state: 'DISPATCHED',
    railReference: 'ref-1',
  });
  await completeOutboxAttempt(db.owner, WORKER, {
    outboxId: refused.outboxId,
    leaseToken: refused.leaseToken,
    state: 'FAILED',
    errorCode: 'rejected',
  });
  await enqueueAndClaim(db.owner, 1, { workerId: WORKER, leaseSeconds: 600 });
  const [crashed] = await enqueueAndClaim(db.owner, 1, { workerId: 'crashed-worker' });
  if (!crashed) throw new Error('fixture: expected one claimed item');
  await expireLeases(db.owner, [crashed.outboxId]);
  await enqueueItems(db.owner, 3, { prefix: uniquePrefix('due') });
  // The ledger is append-only, so an old attempt is written old: its uuidv7 id carries the time.
  await db.owner.query(
    `WITH old_item AS (
       INSERT INTO public.payment_outbox_items (
         outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
         payload, payload_sha256, created_at)
       VALUES (uuidv7(interval '-2 hours'), 'old-instruction', 'old-participant', 1, 'old-key',
               'sandbox', '{}', repeat('0', 64), now() - interval '2 hours')
       RETURNING outbox_id
     )
     INSERT INTO public.payment_outbox_attempts (attempt_id, outbox_id, attempt_no, state, completed_at)
     SELECT uuidv7(interval '-2 hours'), outbox_id, 1, 'DISPATCHED', now() - interval '2 hours'
       FROM old_item`,
  );
});

describe('symphony-relay status (as symphony_readonly)', () => {
  it('--json reports the queue gauges and the last hour of attempts by state', async () => {
    const result = await runCli(['status', '--json'], { DATABASE_URL: reader.url });

    expect(result, result.stderr).toMatchObject({ code: 0 });
    const report = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(report).toEqual({
      pending: 5,
      due: 3,
      leased: 2,
      expiredLeases: 1,
      oldestDueAgeSeconds: expect.any(Number),
      rails: [{ railType: 'sandbox', pending: 5, due: 3, oldestDueAgeSeconds: expect.any(Number) }],
      attemptsLastHour: { DISPATCHED: 1, FAILED: 1, RETRYABLE: 0, ZOMBIE_REQUEUE: 0 },
      pauses: [],
    });
    expect(report.oldestDueAgeSeconds).toBeGreaterThanOrEqual(0);
  });

  it('prints the same figures as a table by default', async () => {
    const result = await runCli(['status'], { DATABASE_URL: reader.url });

    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(result.stdout).toMatch(/^pending\s+5$/m);
    expect(result.stdout).toMatch(/^due\s+3$/m);
    expect(result.stdout).toMatch(/^leased\s+2$/m);
    expect(result.stdout).toMatch(/^expired leases\s+1$/m);
    expect(result.stdout).toMatch(/^oldest due item age\s+\d+\.\d s$/m);
    expect(result.stdout).toMatch(/^\s+sandbox\s+5 \/ 3 \/ \d+\.\d s$/m);
    expect(result.stdout).toMatch(/^\s+DISPATCHED\s+1$/m);
    expect(result.stdout).toMatch(/^\s+FAILED\s+1$/m);
  });

  it('an ingest-only login is refused with a clear message naming symphony_readonly', async () => {
    const producer = await db.createLoginRole(['symphony_ingest']);

    const result = await runCli(['status'], { DATABASE_URL: producer.url });

    expect(result.code).not.toBe(0);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(
      `symphony-relay: status: login role "${producer.name}" does not act as symphony_readonly`,
    );
    expect(result.stderr).toContain(
      'roles create-login --name <login> --acts-as symphony_readonly',
    );
  });
});
