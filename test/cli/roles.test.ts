import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { runCli, scratchDirectory } from '../support/cli.ts';
import { freshDatabase, type TestDatabase } from '../support/database.ts';
import { expectSqlState } from '../support/sqlstate.ts';
import { withCredentials } from '../support/urls.ts';

const PASSWORD = 'a-long-enough-test-password';
const FOREIGN_PASSWORD = 'the-foreign-role-own-password';

interface RoleState {
  rolinherit: boolean;
  rolcreatedb: boolean;
  rolcreaterole: boolean;
  memberships: string[];
}

async function roleState(db: TestDatabase, name: string): Promise<RoleState | undefined> {
  const { rows } = await db.owner.query<RoleState>(
    `SELECT r.rolinherit, r.rolcreatedb, r.rolcreaterole,
            ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                   WHERE m.member = r.oid ORDER BY 1) AS memberships
       FROM pg_roles r WHERE r.rolname = $1`,
    [name],
  );
  return rows[0];
}

/** A role somebody else made: INHERIT, CREATEDB, CREATEROLE, two memberships (as in the report). */
async function foreignRole(db: TestDatabase, name: string): Promise<void> {
  await db.owner.query(
    `CREATE ROLE ${name} LOGIN INHERIT CREATEDB CREATEROLE PASSWORD '${FOREIGN_PASSWORD}'`,
  );
  await db.owner.query(`GRANT pg_read_all_data, symphony_executor TO ${name}`);
}

async function canLogIn(db: TestDatabase, name: string, password: string): Promise<string> {
  const client = new pg.Client({ connectionString: withCredentials(db.ownerUrl, name, password) });
  await client.connect();
  try {
    return (await client.query<{ acting: string }>('SELECT current_user AS acting')).rows[0]!
      .acting;
  } finally {
    await client.end();
  }
}

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

  it('INV-LOGIN-NO-TAKEOVER: refuses an existing role it did not make, in one line, changing nothing', async () => {
    const db = await freshDatabase();
    const name = `foreign_${process.pid}`;
    await foreignRole(db, name);
    try {
      const before = await roleState(db, name);
      const refused = await runCli(
        ['roles', 'create-login', '--name', name, '--acts-as', 'symphony_readonly'],
        { DATABASE_URL: db.ownerUrl, SYMPHONY_LOGIN_PASSWORD: PASSWORD },
      );
      expect(refused.code).toBe(1);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toBe(
        `symphony-relay: role ${name} already exists and was not made by roles create-login (it has no marker; ` +
          'attributes CREATEDB CREATEROLE INHERIT, memberships pg_read_all_data, symphony_executor). Nothing was changed. ' +
          'Choose another --name, or add --force to replace its password, drop those attributes and revoke every ' +
          'membership but symphony_readonly (a login made before the marker existed needs --force once)\n',
      );
      expect(before).toEqual({
        rolinherit: true,
        rolcreatedb: true,
        rolcreaterole: true,
        memberships: ['pg_read_all_data', 'symphony_executor'],
      });
      expect(await roleState(db, name)).toEqual(before);
      expect(await canLogIn(db, name, FOREIGN_PASSWORD)).toBe(name);
    } finally {
      await db.owner.query(`DROP ROLE ${name}`);
    }
  });

  it('INV-LOGIN-NO-TAKEOVER: with --force takes the role over, revokes every other membership and prints the memberships the catalog holds', async () => {
    const db = await freshDatabase();
    const name = `forced_${process.pid}`;
    await foreignRole(db, name);
    const env = { DATABASE_URL: db.ownerUrl, SYMPHONY_LOGIN_PASSWORD: PASSWORD };
    try {
      const forced = await runCli(
        ['roles', 'create-login', '--name', name, '--acts-as', 'symphony_readonly', '--force'],
        env,
      );
      expect(forced.code, forced.stderr).toBe(0);
      expect(forced.stdout).toBe(
        `took over (--force) login role ${name}; it can act only as symphony_readonly\n` +
          `revoked from ${name}: pg_read_all_data, symphony_executor\n` +
          `memberships of ${name} in pg_auth_members now: symphony_readonly (SET TRUE, INHERIT FALSE, ADMIN FALSE)\n`,
      );
      expect(await roleState(db, name)).toEqual({
        rolinherit: false,
        rolcreatedb: false,
        rolcreaterole: false,
        memberships: ['symphony_readonly'],
      });
      await expectSqlState(canLogIn(db, name, FOREIGN_PASSWORD), '28P01');
      expect(await canLogIn(db, name, PASSWORD)).toBe('symphony_readonly');

      // Now it carries the marker: re-running needs no --force, and a new --acts-as replaces
      // the old membership instead of adding to it.
      const moved = await runCli(
        ['roles', 'create-login', '--name', name, '--acts-as', 'symphony_ingest'],
        env,
      );
      expect(moved.code, moved.stderr).toBe(0);
      expect(moved.stdout).toContain(
        `updated login role ${name}; it can act only as symphony_ingest`,
      );
      expect(moved.stdout).toContain(`revoked from ${name}: symphony_readonly\n`);
      expect((await roleState(db, name))?.memberships).toEqual(['symphony_ingest']);
    } finally {
      await db.owner.query(`DROP ROLE ${name}`);
    }
  });

  it('INV-LOGIN-NO-TAKEOVER: never takes over, even with --force, the role it is connected as or a role that owns objects', async () => {
    const db = await freshDatabase();
    const env = { DATABASE_URL: db.ownerUrl, SYMPHONY_LOGIN_PASSWORD: PASSWORD };
    const self = decodeURIComponent(new URL(db.ownerUrl).username);
    const selfResult = await runCli(['roles', 'create-login', '--name', self, '--force'], env);
    expect(selfResult.code).toBe(1);
    expect(selfResult.stderr).toMatch(
      new RegExp(`^symphony-relay: role ${self} is the role this command is connected as: .*\n$`),
    );

    const owner = `owner_${process.pid}`;
    await db.owner.query(`CREATE ROLE ${owner} NOLOGIN`);
    await db.owner.query(`CREATE TABLE owned_by_${process.pid} ()`);
    await db.owner.query(`ALTER TABLE owned_by_${process.pid} OWNER TO ${owner}`);
    try {
      const owning = await runCli(['roles', 'create-login', '--name', owner, '--force'], env);
      expect(owning.code).toBe(1);
      expect(owning.stderr).toMatch(
        new RegExp(
          `^symphony-relay: role ${owner} owns, or was granted privileges on, 1 object\\(s\\) in some database of this cluster: .*REASSIGN OWNED BY ${owner}.*\n$`,
        ),
      );
      const { rows } = await db.owner.query<{ rolcanlogin: boolean }>(
        'SELECT rolcanlogin FROM pg_roles WHERE rolname = $1',
        [owner],
      );
      expect(rows).toEqual([{ rolcanlogin: false }]);
    } finally {
      await db.owner.query(`DROP TABLE owned_by_${process.pid}`);
      await db.owner.query(`DROP ROLE ${owner}`);
    }
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
