import { describe, expect, it } from 'vitest';
import { waitUntil } from '../support/processes.ts';
import { relayerDatabase, spawnRelayer } from '../support/relayer.ts';

/**
 * Fault injection at start: the relayer's start-up query of one phase is held behind a lock
 * the test takes, its backend is terminated while it waits, and the process must exit
 * non-zero with one line for the operator (no unhandled 'error' event, no stack trace).
 */
describe('symphony-relay run, when a start-up connection is terminated', () => {
  it.each([
    ['the policy check', 'public.policy_versions'],
    ['the operator-limits check', 'public.outbox_limits'],
  ])('during %s, exits with one clear line', async (phase, table) => {
    const target = await relayerDatabase();
    const locker = await target.db.connect();
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
    const relayer = spawnRelayer(target.env({ LOG_LEVEL: 'error' }));
    try {
      const waiting = await waitUntil(
        async () => {
          if (relayer.child.exitCode !== null) return { pid: 0 };
          const { rows } = await target.db.owner.query<{ pid: number }>(
            `SELECT pid FROM pg_stat_activity
              WHERE datname = current_database() AND usename = $1 AND wait_event_type = 'Lock'`,
            [target.login.name],
          );
          return rows[0];
        },
        { description: `a relayer session waiting for the lock on ${table}`, attempts: 240 },
      );
      expect(waiting.pid, relayer.output()).toBeGreaterThan(0);
      await target.db.owner.query('SELECT pg_terminate_backend($1)', [waiting.pid]);
      const exit = await Promise.race([
        relayer.exited,
        new Promise<'still running'>((resolve) =>
          setTimeout(() => resolve('still running'), 60_000),
        ),
      ]);
      expect(exit, relayer.output()).toMatchObject({ code: 1 });
      const output = relayer.output();
      expect(output).not.toMatch(/Unhandled 'error' event|\n\s+at /);
      const lines = output
        .trim()
        .split('\n')
        .filter((line) => line.startsWith('symphony-relay:'));
      expect(lines, output).toHaveLength(1);
      expect(lines[0]).toMatch(
        new RegExp(
          `^symphony-relay: ${phase} failed: the connection to PostgreSQL at 127\\.0\\.0\\.1:\\d+/\\w+ was cut: terminating connection due to administrator command \\(SQLSTATE 57P01\\)\\. The server restarted or an administrator ended the session; start again once it accepts connections$`,
        ),
      );
    } finally {
      relayer.child.kill('SIGKILL');
      await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end();
    }
  });
});
