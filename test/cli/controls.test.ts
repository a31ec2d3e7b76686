/**
 * pause, resume, failed and redrive as an operator runs them: real child processes, a
 * control login, one-line answers and exit codes.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { completeOutboxAttempt } from '../../src/db/outbox.ts';
import { runCli } from '../support/cli.ts';
import { freshDatabase } from '../support/database.ts';
import { emptyQueue, enqueueAndClaim, uniquePrefix } from '../support/outbox-fixtures.ts';

const db = await freshDatabase();
const operator = await db.createLoginRole(['symphony_control'], { inherit: false });
const reader = await db.createLoginRole(['symphony_readonly']);
const WORKER = 'controls-cli-worker';
const asOperator = { DATABASE_URL: operator.url };

// A re-driven item is queued again; each test claims only its own new items.
beforeEach(() => emptyQueue(db.owner));

/** `count` items claimed and recorded with `state` (FAILED ones with `errorCode`). */
async function finishedItems(
  count: number,
  state: 'FAILED' | 'DISPATCHED',
  errorCode = 'HTTP_422',
): Promise<string[]> {
  const items = await enqueueAndClaim(db.owner, count, {
    workerId: WORKER,
    prefix: uniquePrefix('cli'),
  });
  for (const item of items) {
    await completeOutboxAttempt(db.owner, WORKER, {
      outboxId: item.outboxId,
      leaseToken: item.leaseToken,
      state,
      errorCode: state === 'FAILED' ? errorCode : null,
      railReference: state === 'DISPATCHED' ? 'ref' : null,
    });
  }
  return items.map((item) => item.outboxId);
}

describe('symphony-relay pause / resume', () => {
  it('pauses a rail once, shows it in status, and resumes it once', async () => {
    const paused = await runCli(
      ['pause', '--rail', 'bank-x', '--reason', 'bank X answers 503'],
      asOperator,
    );
    expect(paused, paused.stderr).toMatchObject({ code: 0 });
    expect(paused.stdout).toMatch(
      new RegExp(`^paused rail bank-x \\(by ${operator.name} at \\S+Z\\)\\n$`),
    );

    const again = await runCli(['pause', '--rail', 'bank-x', '--reason', 'again'], asOperator);
    expect(again, again.stderr).toMatchObject({ code: 0 });
    expect(again.stdout).toMatch(
      /already paused by .* \(reason: bank X answers 503\); nothing changed/,
    );

    const status = await runCli(['status'], { DATABASE_URL: reader.url });
    expect(status.stdout).toMatch(
      new RegExp(`^  rail bank-x\\s+since \\S+ by ${operator.name}: bank X answers 503$`, 'm'),
    );
    const json = JSON.parse(
      (await runCli(['status', '--json'], { DATABASE_URL: reader.url })).stdout,
    ) as {
      pauses: unknown[];
    };
    expect(json.pauses).toEqual([
      expect.objectContaining({ scope: 'rail', target: 'bank-x', reason: 'bank X answers 503' }),
    ]);

    const resumed = await runCli(['resume', '--rail', 'bank-x'], asOperator);
    expect(resumed, resumed.stderr).toMatchObject({ code: 0 });
    expect(resumed.stdout).toMatch(/^resumed rail bank-x \(paused since \S+Z\)$/m);
    const twice = await runCli(['resume', '--rail', 'bank-x'], asOperator);
    expect(twice.stdout).toBe('rail bank-x was not paused; nothing changed\n');
  });

  it.each([
    [['pause', '--reason', 'r'], 'give exactly one of --all, --rail <rail_type> or --participant'],
    [['pause', '--all', '--rail', 'x', '--reason', 'r'], 'give exactly one of --all'],
    [['resume'], 'give exactly one of --all'],
  ])('%j exits 2 with one line saying what to give', async (args, message) => {
    const result = await runCli(args, asOperator);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('a rail type the database refuses is one line with its SQLSTATE', async () => {
    const result = await runCli(['pause', '--rail', 'bank x', '--reason', 'r'], asOperator);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^symphony-relay: pause failed in the database: .*\(SQLSTATE 22023\)\n$/,
    );
  });

  it('a login that cannot act as symphony_control is refused, naming the role', async () => {
    const result = await runCli(['pause', '--all', '--reason', 'r'], { DATABASE_URL: reader.url });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`login role "${reader.name}" does not act as symphony_control`);
  });
});

describe('symphony-relay failed / redrive', () => {
  it('lists dead letters and re-drives one, once', async () => {
    const [failed] = await finishedItems(1, 'FAILED', 'HTTP_409');
    const listed = await runCli(['failed', '--error-code', 'HTTP_409', '--json'], asOperator);
    expect(listed, listed.stderr).toMatchObject({ code: 0 });
    expect(JSON.parse(listed.stdout)).toEqual([
      expect.objectContaining({ outboxId: failed, attempts: 1, drive: 1, errorCode: 'HTTP_409' }),
    ]);
    const table = await runCli(['failed', '--error-code', 'HTTP_409'], asOperator);
    expect(table.stdout).toMatch(
      /^outbox_id\s+rail\s+participant\s+seq\s+attempts\s+drive\s+error\s+failed_at$/m,
    );
    expect(table.stdout).toMatch(
      new RegExp(`^${failed}\\s+sandbox\\s+\\S+\\s+1\\s+1\\s+1\\s+HTTP_409\\s+\\S+Z$`, 'm'),
    );

    const first = await runCli(
      ['redrive', '--outbox-id', failed!, '--reason', 'account fixed'],
      asOperator,
    );
    expect(first, first.stderr).toMatchObject({ code: 0 });
    expect(first.stdout).toBe(
      `${failed}: re-driven (drive 2); queued again with the same idempotency key\n`,
    );
    const second = await runCli(
      ['redrive', '--outbox-id', failed!, '--reason', 'again'],
      asOperator,
    );
    expect(second, second.stderr).toMatchObject({ code: 0 });
    expect(second.stdout).toMatch(
      new RegExp(
        `^${failed}: this failure was already re-driven by ${operator.name} at \\S+Z \\(drive 2\\); nothing done\\n$`,
      ),
    );
    const after = await runCli(['failed', '--error-code', 'HTTP_409', '--json'], asOperator);
    expect(JSON.parse(after.stdout)).toEqual([]);
  });

  it('refuses a DISPATCHED item with P7501, an unknown one with P7502 and a malformed id with exit 2', async () => {
    const [paid] = await finishedItems(1, 'DISPATCHED');
    const refused = await runCli(['redrive', '--outbox-id', paid!, '--reason', 'r'], asOperator);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/is DISPATCHED, not FAILED; .*\(SQLSTATE P7501\)\n$/);

    const unknown = await runCli(
      ['redrive', '--outbox-id', '00000000-0000-7000-8000-000000000000', '--reason', 'r'],
      asOperator,
    );
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('(SQLSTATE P7502)');

    const malformed = await runCli(
      ['redrive', '--outbox-id', 'pay-1', '--reason', 'r'],
      asOperator,
    );
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain('--outbox-id must be an outbox item id (a UUID)');
  });

  it('the bulk form lists with --dry-run, then re-drives every matching dead letter', async () => {
    const ids = await finishedItems(3, 'FAILED', 'HTTP_451');
    const dry = await runCli(
      ['redrive', '--rail', 'sandbox', '--error-code', 'HTTP_451', '--dry-run', '--reason', 'r'],
      asOperator,
    );
    expect(dry, dry.stderr).toMatchObject({ code: 0 });
    for (const id of ids) expect(dry.stdout).toContain(id);
    expect(dry.stdout).toContain('dry run: 3 item(s) would be re-driven; nothing changed');
    const { rows } = await db.owner.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM payment_outbox_pending WHERE outbox_id = ANY($1::uuid[])',
      [ids],
    );
    expect(rows[0]?.n).toBe(0);

    const bulk = await runCli(
      ['redrive', '--rail', 'sandbox', '--error-code', 'HTTP_451', '--reason', 'bank fixed'],
      asOperator,
    );
    expect(bulk, bulk.stderr).toMatchObject({ code: 0 });
    expect(bulk.stdout).toContain('re-drove 3 of 3 listed item(s)');
    const { rows: queued } = await db.owner.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM payment_outbox_pending WHERE outbox_id = ANY($1::uuid[])',
      [ids],
    );
    expect(queued[0]?.n).toBe(3);
  });

  it('without --outbox-id or a filter it exits 2 and says what to give', async () => {
    const result = await runCli(['redrive', '--reason', 'r'], asOperator);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('give --outbox-id <uuid>, or --rail and/or --error-code');
  });
});

describe('symphony-relay rail set / show', () => {
  it('sets a rail’s limit, ordering and breaker, shows them, and removes them', async () => {
    const set = await runCli(
      [
        'rail',
        'set',
        'bank-y',
        '--max-per-second',
        '50',
        '--ordered',
        '--breaker-threshold',
        '5',
        '--reason',
        'contract',
      ],
      asOperator,
    );
    expect(set, set.stderr).toMatchObject({ code: 0 });
    expect(set.stdout).toContain('rate limit     50/s for the whole fleet');
    expect(set.stdout).toContain('ordering       per participant');
    expect(set.stdout).toContain(
      'breaker        closed (opens after 5 consecutive transport failures; cool-down 30 s doubling up to 600 s',
    );
    const shown = await runCli(['rail', 'show', 'bank-y', '--json'], asOperator);
    expect(JSON.parse(shown.stdout)).toMatchObject({
      rails: [{ railType: 'bank-y', maxPerSecond: 50, ordered: true, breakerThreshold: 5 }],
    });
    const removed = await runCli(
      [
        'rail',
        'set',
        'bank-y',
        '--max-per-second',
        '0',
        '--unordered',
        '--breaker-threshold',
        '0',
        '--reason',
        'ended',
      ],
      asOperator,
    );
    expect(removed.stdout).toMatch(
      /rate limit {5}none\n {2}ordering {7}none\n {2}breaker {8}off\n/,
    );
    const unknown = await runCli(['rail', 'show', 'never-set'], asOperator);
    expect(unknown.stdout).toBe(
      'rail never-set: no settings (no rate limit, unordered, no breaker); not paused\n',
    );
  });

  it.each([
    [['rail', 'set', 'bank', '--reason', 'r'], 'nothing to change'],
    [
      ['rail', 'set', 'bank', '--max-per-second', 'fast', '--reason', 'r'],
      '--max-per-second must be a whole number from 0 to 100000 (0 removes the limit), in digits only, got "fast"',
    ],
    [
      ['rail', 'set', 'bank', '--breaker-cooldown-seconds', '-1', '--reason', 'r'],
      '--breaker-cooldown-seconds must be a whole number of seconds from 1 to 86400, in digits only, got "-1"',
    ],
    [
      ['rail', 'set', 'bank', '--ordered', '--unordered', '--reason', 'r'],
      'give --ordered or --unordered, not both',
    ],
  ])('%j exits 2 with one line', async (args, message) => {
    const result = await runCli(args, asOperator);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('an out-of-range value is refused by the database with 22023', async () => {
    const result = await runCli(
      ['rail', 'set', 'bank', '--max-per-second', '100001', '--reason', 'r'],
      asOperator,
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /max_per_second must be between 1 and 100000.*\(SQLSTATE 22023\)/,
    );
  });
});
