import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR } from '../../src/db/migrate/files.ts';
import { freshDatabase } from '../support/database.ts';
import { RUNTIME_ROLES } from '../support/role-boundaries.ts';
import { expectSqlState } from '../support/sqlstate.ts';
import { inOverlappingTransactions, rolledBackOn, type Outcome } from '../support/transactions.ts';

const db = await freshDatabase();
// Two more databases of the same cluster, for runs of 0003 from several databases at once.
const others = await Promise.all([freshDatabase(), freshDatabase()]);

/** `sql` on two connections to each of the three databases, in overlapping transactions. */
async function overlappingRuns(sql: string): Promise<Outcome[]> {
  const clients = await Promise.all(
    [db, ...others].flatMap((database) => [database.connect(), database.connect()]),
  );
  try {
    return await inOverlappingTransactions(clients, sql, db.owner);
  } finally {
    await Promise.all(clients.map((client) => client.end()));
  }
}
const rolesSql = await readFile(path.join(MIGRATIONS_DIR, '0003_roles.sql'), 'utf8');

interface RoleAttributes {
  rolname: string;
  rolcanlogin: boolean;
  rolsuper: boolean;
  rolcreatedb: boolean;
  rolcreaterole: boolean;
  rolreplication: boolean;
  rolbypassrls: boolean;
}

async function runtimeRoleAttributes(): Promise<RoleAttributes[]> {
  const { rows } = await db.owner.query<RoleAttributes>(
    `SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls
       FROM pg_catalog.pg_roles WHERE rolname = ANY($1) ORDER BY rolname`,
    [[...RUNTIME_ROLES]],
  );
  return rows;
}

const UNPRIVILEGED = {
  rolcanlogin: false,
  rolsuper: false,
  rolcreatedb: false,
  rolcreaterole: false,
  rolreplication: false,
  rolbypassrls: false,
};

describe('runtime roles (0003_roles)', () => {
  it('INV-ROLE-NOLOGIN: the five runtime roles exist, cannot log in and hold no elevated attribute', async () => {
    expect(await runtimeRoleAttributes()).toEqual(
      [...RUNTIME_ROLES].sort().map((rolname) => ({ rolname, ...UNPRIVILEGED })),
    );
  });

  it('INV-ROLE-NOLOGIN: symphony_auth is deliberately not a role', async () => {
    const { rowCount } = await db.owner.query(
      "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'symphony_auth'",
    );
    expect(rowCount).toBe(0);
  });

  it('INV-ROLE-NO-INHERITED-POWERS: runtime roles are members of no other role', async () => {
    const { rows } = await db.owner.query(
      `SELECT m.rolname AS member, g.rolname AS granted
         FROM pg_catalog.pg_auth_members am
         JOIN pg_catalog.pg_roles m ON m.oid = am.member
         JOIN pg_catalog.pg_roles g ON g.oid = am.roleid
        WHERE m.rolname = ANY($1)`,
      [[...RUNTIME_ROLES]],
    );
    expect(rows).toEqual([]);
  });

  it('INV-ROLE-IDEMPOTENT: re-applying 0003_roles on existing roles, in overlapping transactions in three databases, changes nothing', async () => {
    // Roles are cluster-global while each database is migrated on its own. Two ALTER ROLEs
    // of one role in overlapping transactions fail ("tuple concurrently updated"), so the
    // file must not write a role that is already right.
    const outcomes = await overlappingRuns(rolesSql);
    expect(outcomes).toEqual(outcomes.map(() => ({ ok: true })));
    expect(await runtimeRoleAttributes()).toEqual(
      [...RUNTIME_ROLES].sort().map((rolname) => ({ rolname, ...UNPRIVILEGED })),
    );
  });

  it('INV-ROLE-IDEMPOTENT: runs of 0003_roles racing to create missing roles, in overlapping transactions in three databases, all succeed and create each role once', async () => {
    // The real runtime roles exist (other test files use them), so the race is run on the
    // same file with the role names swapped for scratch ones nobody else uses.
    const prefix = `race_${process.pid}_${randomBytes(4).toString('hex')}`;
    const scratchSql = rolesSql.replaceAll(
      /symphony_(control|ingest|executor|readonly|auditor)/g,
      `${prefix}_$1`,
    );
    const scratchRoles = RUNTIME_ROLES.map((role) => role.replace('symphony', prefix)).sort();
    try {
      const outcomes = await overlappingRuns(scratchSql);
      expect(outcomes).toEqual(outcomes.map(() => ({ ok: true })));
      const { rows } = await db.owner.query<RoleAttributes & { commented: boolean }>(
        `SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls,
                shobj_description(oid, 'pg_authid') IS NOT NULL AS commented
           FROM pg_catalog.pg_roles WHERE rolname = ANY($1) ORDER BY rolname`,
        [scratchRoles],
      );
      expect(rows).toEqual(
        scratchRoles.map((rolname) => ({ rolname, ...UNPRIVILEGED, commented: true })),
      );
    } finally {
      for (const role of scratchRoles) await db.owner.query(`DROP ROLE IF EXISTS ${role}`);
    }
  });

  it('INV-ROLE-NOLOGIN: 0003_roles forces a runtime role that was made able to log in back to NOLOGIN', async () => {
    // Roles are cluster-global and other test files run meanwhile: the tampering stays uncommitted.
    await rolledBackOn(db.owner, async (client) => {
      await client.query('ALTER ROLE symphony_auditor LOGIN CREATEDB');
      await client.query(rolesSql);
      const { rows } = await client.query(
        "SELECT rolcanlogin, rolcreatedb FROM pg_catalog.pg_roles WHERE rolname = 'symphony_auditor'",
      );
      expect(rows).toEqual([{ rolcanlogin: false, rolcreatedb: false }]);
    });
  });

  it('INV-ROLE-NO-INHERITED-POWERS: 0003_roles refuses (55000) when a runtime role was made a member of another role', async () => {
    // Roles are cluster-global and other test files run meanwhile: the tampering stays uncommitted.
    await rolledBackOn(db.owner, async (client) => {
      await client.query('GRANT pg_read_all_data TO symphony_auditor');
      const error = await expectSqlState(client.query(rolesSql), '55000');
      expect(error.message).toContain('symphony_auditor is a member of pg_read_all_data');
    });
  });
});
