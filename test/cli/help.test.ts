import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.ts';

describe('--help of the operator commands', () => {
  it.each([
    [
      ['enqueue'],
      [
        '--instruction-id',
        '--participant-id',
        '--idempotency-key',
        '--rail-type',
        '--payload',
        '--file',
        '--database-url',
        'symphony_ingest',
      ],
    ],
    [['status'], ['--json', '--database-url', 'symphony_readonly']],
    [
      ['evidence'],
      [
        '--json',
        '--database-url',
        '--test-report',
        '--register',
        '--policy-file',
        'symphony_auditor',
      ],
    ],
    [
      ['policy', 'seed'],
      ['--file', '--acts-as', '--database-url'],
    ],
    [
      ['mock-rail'],
      [
        '--port',
        '--host',
        '--latency-ms',
        '--failure-rate',
        '--retryable-rate',
        '--retry-after-seconds',
      ],
    ],
  ])('%j --help exits 0 and describes its options', async (command, options) => {
    const result = await runCli([...command, '--help']);

    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(result.stdout).toContain(`Usage: symphony-relay ${command.join(' ')} [options]`);
    for (const option of options) expect(result.stdout).toContain(option);
  });

  it('the top-level help lists every operator command', async () => {
    const result = await runCli(['--help']);

    expect(result.code).toBe(0);
    for (const command of ['enqueue', 'status', 'policy', 'mock-rail']) {
      expect(result.stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
    }
  });

  it('status without a connection string exits 2 and says how to provide one', async () => {
    const result = await runCli(['status']);

    expect(result.code).toBe(2);
    expect(result.stderr).toContain('DATABASE_URL is not set: status needs');
  });
});
