import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { runCli, scratchDirectory } from '../support/cli.ts';
import { freshDatabase } from '../support/database.ts';
import { expectSqlState } from '../support/sqlstate.ts';
import { withCredentials } from '../support/urls.ts';

const PASSWORD = 'a-long-enough-test-password';

describe('symphony-relay roles create-login', () => {
  it('creates a NOINHERIT login whose sessions start as the runtime role (no startup parameter), never printing the password', async () => {
    const db = await freshDatabase();
    const name = `relay_${process.pid}`;
    const created = await runCli(['roles', 'create-login', '--name', name], {
      DATABASE_URL: db.ownerUrl,
      SYMPHONY_LOGIN_PASSWORD: PASSWORD,
    });
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain(
      `created login role ${name}; it can act only as symphony_executor`,
    );
    expect(created.stdout + created.stderr).not.toContain(PASSWORD);

    const login = new pg.Client({ connectionString: withCredentials(db.ownerUrl, name, PASSWORD) });
    await login.connect();
    try {
      // No startup parameter needed (PgBouncer refuses them): the login's role-level defaults
      // make every session start as the runtime role, with the relayer's statement timeout.
      const session = await login.query<{ acting_as: string; statement_timeout: string }>(
        `SELECT current_user AS acting_as, current_setting('statement_timeout') AS statement_timeout`,
      );
      expect(session.rows).toEqual([{ acting_as: 'symphony_executor', statement_timeout: '30s' }]);
      const claimed = await login.query(
        "SELECT * FROM public.claim_outbox_batch(1, $1, 30, '{sandbox}')",
        ['w'],
      );
      expect(claimed.rowCount).toBe(0);
      // Stepping back to the login itself leaves nothing: NOINHERIT and a membership WITH INHERIT FALSE.
      await login.query('SET ROLE NONE');
      await expectSqlState(
        login.query("SELECT * FROM public.claim_outbox_batch(1, $1, 30, '{sandbox}')", ['w']),
        '42501',
      );
    } finally {
      await login.end();
      await db.owner.query(`DROP ROLE ${name}`);
    }
  });

  it('re-keys an existing login (safe to re-run) and refuses a reserved or invalid name', async () => {
    const db = await freshDatabase();
    const name = `rekey_${process.pid}`;
    const env = { DATABASE_URL: db.ownerUrl, SYMPHONY_LOGIN_PASSWORD: PASSWORD };
    expect((await runCli(['roles', 'create-login', '--name', name], env)).code).toBe(0);
    const again = await runCli(['roles', 'create-login', '--name', name], env);
    expect(again.stdout).toContain(`updated login role ${name}`);
    await db.owner.query(`DROP ROLE ${name}`);

    const reserved = await runCli(['roles', 'create-login', '--name', 'symphony_sneaky'], env);
    expect(reserved.code).not.toBe(0);
    expect(reserved.stderr).toMatch(/login role name "symphony_sneaky" is invalid/);
  });

  it('refuses a placeholder password such as the one deploy/.env.example ships', async () => {
    const db = await freshDatabase();
    const result = await runCli(['roles', 'create-login', '--name', 'placeholder_login'], {
      DATABASE_URL: db.ownerUrl,
      SYMPHONY_LOGIN_PASSWORD: 'change-me-relayer-password',
    });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/the login password is a placeholder/);
    expect(result.stderr).not.toContain('change-me-relayer-password');
  });

  it('requires the password in SYMPHONY_LOGIN_PASSWORD', async () => {
    const db = await freshDatabase();
    const result = await runCli(['roles', 'create-login', '--name', 'nopass'], {
      DATABASE_URL: db.ownerUrl,
    });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/SYMPHONY_LOGIN_PASSWORD is not set/);
  });

  it('reads the connection and the password from files (DATABASE_URL_FILE, SYMPHONY_LOGIN_PASSWORD_FILE), as the compose stack mounts them', async () => {
    const db = await freshDatabase();
    const dir = await scratchDirectory('roles-secrets');
    const name = `file_${process.pid}`;
    const env = {
      DATABASE_URL_FILE: await dir.write('owner-url', `${db.ownerUrl}\n`),
      SYMPHONY_LOGIN_PASSWORD_FILE: await dir.write('password', `${PASSWORD}\n`),
    };
    const created = await runCli(['roles', 'create-login', '--name', name], env);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout + created.stderr).not.toContain(PASSWORD);
    const login = new pg.Client({ connectionString: withCredentials(db.ownerUrl, name, PASSWORD) });
    await login.connect();
    await login.end();
    await db.owner.query(`DROP ROLE ${name}`);
  });

  it('exits 2 with one line naming an unreadable or empty secret file, never its contents', async () => {
    const db = await freshDatabase();
    const dir = await scratchDirectory('roles-bad-secrets');
    const missing = `${dir.path}/absent`;
    const noUrl = await runCli(['roles', 'create-login', '--name', 'x_login'], {
      DATABASE_URL_FILE: missing,
      SYMPHONY_LOGIN_PASSWORD: PASSWORD,
    });
    expect(noUrl.code).toBe(2);
    expect(noUrl.stderr).toBe(
      `symphony-relay: roles create-login: DATABASE_URL_FILE="${missing}" cannot be read (ENOENT): expected a readable file holding DATABASE_URL (check the path and the mounted secret's permissions)\n`,
    );

    const emptyPassword = await runCli(['roles', 'create-login', '--name', 'x_login'], {
      DATABASE_URL: db.ownerUrl,
      SYMPHONY_LOGIN_PASSWORD_FILE: await dir.write('empty', '\n'),
    });
    expect(emptyPassword.code).toBe(2);
    expect(emptyPassword.stderr.trim().split('\n')).toHaveLength(1);
    expect(emptyPassword.stderr).toMatch(/SYMPHONY_LOGIN_PASSWORD_FILE=".*" is empty/);

    const placeholder = await runCli(['roles', 'create-login', '--name', 'x_login'], {
      DATABASE_URL: db.ownerUrl,
      SYMPHONY_LOGIN_PASSWORD_FILE: await dir.write('placeholder', 'change-me-relayer-password\n'),
    });
    expect(placeholder.code).not.toBe(0);
    expect(placeholder.stderr).toMatch(/the login password is a placeholder/);
    expect(placeholder.stderr).not.toContain('change-me-relayer-password');
  });
});
