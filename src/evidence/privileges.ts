import type { Queryable } from '../db/pool.ts';
import { checkPrivilegeMatrix } from '../db/privilege-matrix.ts';
import { RUNTIME_ROLES } from '../db/roles.ts';

/**
 * What a privilege check reports: grants the database holds that the declaration does not
 * (`undeclared`) and declared grants the database lacks (`missing`), one readable line each.
 * The declared privilege matrix (`checkPrivilegeMatrix`) returns this shape.
 */
export interface PrivilegeMatrixCheck {
  undeclared: string[];
  missing: string[];
}

export interface PrivilegeCheck {
  /** What was checked, for the report ("runtime role memberships", "policy/privilege-matrix…"). */
  name: string;
  check: (db: Queryable) => Promise<PrivilegeMatrixCheck>;
}

/**
 * Every privilege any role or PUBLIC holds on the relay database (database, schema, tables,
 * columns, sequences, functions, types, large objects, owners) against policy/privileges.json.
 */
export const declaredPrivilegeMatrix: PrivilegeCheck = {
  name: 'declared privilege matrix (policy/privileges.json)',
  check: (db) => checkPrivilegeMatrix(db),
};

/**
 * A membership of a runtime role in another role (e.g. `GRANT pg_read_all_data TO
 * symphony_auditor`) is cluster-wide, outside the matrix of this database, and would give
 * that role powers no migration granted. Runtime roles are members of nothing
 * (INV-ROLE-NO-INHERITED-POWERS).
 */
export const runtimeRoleMemberships: PrivilegeCheck = {
  name: 'runtime role memberships (runtime roles are members of no role)',
  async check(db) {
    const { rows } = await db.query<{ member: string; granted: string }>(
      `SELECT m.rolname AS member, r.rolname AS granted
         FROM pg_catalog.pg_auth_members a
         JOIN pg_catalog.pg_roles m ON m.oid = a.member
         JOIN pg_catalog.pg_roles r ON r.oid = a.roleid
        WHERE m.rolname = ANY($1::text[])
        ORDER BY 1, 2`,
      [RUNTIME_ROLES],
    );
    return {
      undeclared: rows.map((row) => `${row.member} is a member of ${row.granted}`),
      missing: [],
    };
  },
};

/** The checks `evidence` runs. */
export const PRIVILEGE_CHECKS: readonly PrivilegeCheck[] = [
  declaredPrivilegeMatrix,
  runtimeRoleMemberships,
];
