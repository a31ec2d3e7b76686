import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { MIGRATION_LOCK_KEY } from '../../src/db/migrate/runner.ts';
import { runCli } from '../support/cli.ts';
import { freshDatabase } from '../support/database.ts';

describe('symphony-relay migrate and its lock', () => {
  it('INV-MIG-LOCK-BOUNDED: gives up waiting for a migration lock another session holds, with one line naming the holder and what to do, and applies nothing', async () => {
    const db = await freshDatabase({ empty: true });
    const holder = new pg.Client({
      connectionString: db.ownerUrl,
      application_name: 'stuck-lock-holder',
    });
    await holder.connect();
    try {
      const { rows } = await holder.query<{ pid: number }>(
        'SELECT pg_backend_pid() AS pid, pg_advisory_lock($1)',
        [MIGRATION_LOCK_KEY],
      );
      const pid = rows[0]?.pid;
      const blocked = await runCli(['migrate', '--lock-wait', '1'], { DATABASE_URL: db.ownerUrl });
      expect(blocked.code).toBe(1);
      expect(blocked.stderr.trim().split('\n')).toHaveLength(1);
      expect(blocked.stderr).toMatch(
        /^symphony-relay: migrate waited 1 s for the migration lock \(advisory lock \d+ in database \w+\) and gave up: it is held by pid \d+ /,
      );
      expect(blocked.stderr).toContain(`held by pid ${pid} (`);
      expect(blocked.stderr).toContain('application "stuck-lock-holder"');
      expect(blocked.stderr).toContain(`SELECT pg_terminate_backend(${pid})`);
      expect(blocked.stderr).toContain('Nothing was applied.');
      expect(blocked.stderr).not.toMatch(/\n\s+at /);
      const ledger = await db.owner.query(
        `SELECT to_regclass('public.schema_migrations') IS NULL AS absent`,
      );
      expect(ledger.rows).toEqual([{ absent: true }]);
    } finally {
      await holder.end();
    }
    // The holder gone, the same command goes through.
    const applied = await runCli(['migrate', '--lock-wait', '1'], { DATABASE_URL: db.ownerUrl });
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toMatch(/applied \d+ migration\(s\)/);
  });

  it('refuses a --lock-wait that is not whole seconds from 1 to 86400, in one line', async () => {
    for (const value of ['0', '1.5']) {
      const result = await runCli(['migrate', '--lock-wait', value], {
        DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none',
      });
      expect(result.code).toBe(2);
      expect(result.stderr).toBe(
        `symphony-relay: --lock-wait "${value}" is invalid: expected whole seconds from 1 to 86400\n`,
      );
    }
  });
});
