import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, inject } from 'vitest';
import { TEMPLATE_DATABASE, withCredentials, withDatabaseName } from './urls.ts';

export interface TestDatabase {
  name: string;
  /** Superuser (owner of every migrated object) URL for this database. */
  ownerUrl: string;
  /** Pool connected as the owner; invariant proofs run here so triggers, not grants, refuse. */
  owner: pg.Pool;
  /** A new client as the owner, for tests that need several real connections. */
  connect(): Promise<pg.Client>;
  /** A LOGIN role granted membership in the given NOLOGIN roles; dropped with the database. */
  /**
   * A LOGIN role that is a member of `memberOf`. With exactly one role, its sessions start
   * acting as it (a role-level `SET role`, as `roles create-login` does) unless
   * `sessionRole: null`.
   */
  createLoginRole(
    memberOf: string[],
    options?: { inherit?: boolean; sessionRole?: string | null },
  ): Promise<LoginRole>;
}

export interface LoginRole {
  name: string;
  password: string;
  url: string;
  /** A client that has already run SET ROLE to `actAs` when given. */
  connect(actAs?: string): Promise<pg.Client>;
}

const uniqueSuffix = () => `${process.pid}_${randomBytes(4).toString('hex')}`;

export function adminUrl(): string {
  return inject('postgresAdminUrl');
}

async function asAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/**
 * CREATE DATABASE copies a template's contents but not its database-level privileges
 * (pg_database.datacl, e.g. 0026's REVOKE TEMPORARY ... FROM PUBLIC): carry them over, so
 * the copy grants what a database migrated in place would.
 */
async function copyDatabasePrivileges(client: pg.Client, template: string, name: string) {
  const { rows } = await client.query<{ grantee: string; privilege: string }>(
    `SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee,
            a.privilege_type AS privilege
       FROM pg_catalog.pg_database d
      CROSS JOIN LATERAL aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
      WHERE d.datname = $1 AND a.grantee <> d.datdba`,
    [template],
  );
  await client.query(`REVOKE ALL ON DATABASE ${name} FROM PUBLIC`);
  for (const { grantee, privilege } of rows) {
    await client.query(`GRANT ${privilege} ON DATABASE ${name} TO ${grantee}`);
  }
}

/**
 * A database of this test file's own: a copy of the migrated template, or an empty
 * one for the migration runner's tests. Dropped, with its login roles, after the file.
 */
export async function freshDatabase(options: { empty?: boolean } = {}): Promise<TestDatabase> {
  const name = `t_${uniqueSuffix()}`;
  const template = options.empty ? 'template0' : TEMPLATE_DATABASE;
  await asAdmin(async (client) => {
    await client.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
    await copyDatabasePrivileges(client, template, name);
  });
  const ownerUrl = withDatabaseName(adminUrl(), name);
  const owner = new pg.Pool({ connectionString: ownerUrl, max: 10 });
  // Tests cut connections on purpose (pg_terminate_backend); an idle pooled client that
  // loses its connection is simply replaced, not an unhandled error.
  owner.on('error', () => undefined);
  const roles: string[] = [];

  afterAll(async () => {
    await owner.end();
    await asAdmin(async (client) => {
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      for (const role of roles) await client.query(`DROP ROLE IF EXISTS ${role}`);
    });
  });

  return {
    name,
    ownerUrl,
    owner,
    async connect() {
      const client = new pg.Client({ connectionString: ownerUrl });
      await client.connect();
      return client;
    },
    async createLoginRole(memberOf, roleOptions = {}) {
      const role = `login_${uniqueSuffix()}`;
      const password = randomBytes(12).toString('hex');
      roles.push(role);
      const inherit = roleOptions.inherit === false ? 'NOINHERIT' : 'INHERIT';
      await asAdmin(async (client) => {
        await client.query(`CREATE ROLE ${role} LOGIN ${inherit} PASSWORD '${password}'`);
        for (const parent of memberOf) await client.query(`GRANT ${parent} TO ${role}`);
        const sessionRole =
          roleOptions.sessionRole === undefined
            ? memberOf.length === 1
              ? memberOf[0]
              : undefined
            : roleOptions.sessionRole;
        if (sessionRole) await client.query(`ALTER ROLE ${role} SET role = '${sessionRole}'`);
      });
      const url = withCredentials(ownerUrl, role, password);
      return {
        name: role,
        password,
        url,
        async connect(actAs) {
          const client = new pg.Client({ connectionString: url });
          await client.connect();
          if (actAs) await client.query(`SET ROLE ${actAs}`);
          return client;
        },
      };
    },
  };
}
