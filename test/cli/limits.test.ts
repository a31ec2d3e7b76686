/**
 * limits show / limits set as an operator runs them: real child processes, a control login,
 * one-line answers and exit codes, the change in the audit trail.
 */
import { describe, expect, it } from 'vitest';
import { outboxCurrentLimits } from '../../src/db/outbox.ts';
import { runCli } from '../support/cli.ts';
import { freshDatabase } from '../support/database.ts';

const db = await freshDatabase();
const operator = await db.createLoginRole(['symphony_control'], { inherit: false });
const reader = await db.createLoginRole(['symphony_readonly']);
const asOperator = { DATABASE_URL: operator.url };

async function retryCeiling(): Promise<number> {
  return (await outboxCurrentLimits(db.owner)).retryCeiling;
}

describe('symphony-relay limits', () => {
  it('shows the limits, changes one with an audited reason, and shows the change', async () => {
    const shown = await runCli(['limits', 'show', '--json'], asOperator);
    expect(shown, shown.stderr).toMatchObject({ code: 0 });
    const before = JSON.parse(shown.stdout) as { retryCeiling: number };

    const changed = await runCli(
      [
        'limits',
        'set',
        '--name',
        'retry_ceiling',
        '--value',
        '7',
        '--reason',
        'bank asks for fewer',
      ],
      asOperator,
    );
    expect(changed, changed.stderr).toMatchObject({
      code: 0,
      stdout: `retry_ceiling: ${before.retryCeiling} -> 7\n`,
    });
    expect(await retryCeiling()).toBe(7);
    const { rows } = await db.owner.query<{ actor: string; reason: string; details: unknown }>(
      `SELECT actor, reason, details FROM public.outbox_control_audit
        WHERE action = 'set_limit' AND target = 'retry_ceiling'`,
    );
    expect(rows).toEqual([
      {
        actor: operator.name,
        reason: 'bank asks for fewer',
        details: { old: before.retryCeiling, new: 7 },
      },
    ]);

    const text = await runCli(['limits', 'show'], asOperator);
    expect(text.stdout).toMatch(/^retry_ceiling {13}7\n/);
  });

  it.each([
    [['--name', 'retry_ceiling', '--value', '-5'], '--value must be a whole number in digits only'],
    [['--name', 'retry_ceiling', '--value', '2.5'], 'got "2.5"'],
    [
      ['--name', 'max_power', '--value', '5'],
      'unknown limit "max_power"; expected one of retry_ceiling',
    ],
  ])('limits set %j exits 2 with one line and changes nothing', async (args, message) => {
    const before = await retryCeiling();
    const result = await runCli(['limits', 'set', ...args, '--reason', 'r'], asOperator);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(await retryCeiling()).toBe(before);
  });

  it('an out-of-range value is refused by the database, naming the range', async () => {
    const result = await runCli(
      ['limits', 'set', '--name', 'retry_ceiling', '--value', '1001', '--reason', 'r'],
      asOperator,
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('retry_ceiling must be between 1 and 1000');
    expect(result.stderr).toContain('(SQLSTATE 22023)');
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('a login that does not act as symphony_control is refused before anything changes', async () => {
    const before = await retryCeiling();
    const result = await runCli(
      ['limits', 'set', '--name', 'retry_ceiling', '--value', '3', '--reason', 'r'],
      { DATABASE_URL: reader.url },
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('does not act as symphony_control');
    expect(await retryCeiling()).toBe(before);
  });
});
