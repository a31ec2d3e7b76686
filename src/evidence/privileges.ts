import type { Queryable } from '../db/pool.ts';
import { RUNTIME_ROLES } from '../db/roles.ts';

/**
 * What a privilege check reports: grants the database holds that the declaration does not
 * (`undeclared`) and declared grants the database lacks (`missing`), one readable line each.
 * The declared privilege matrix (issue 12) returns this shape; `evidence` takes any such check.
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
 * Until the declared privilege matrix is wired in: the one grant the schema snapshot cannot
 * see. Grants on objects in schema public are part of the snapshot (compared line by line);
 * a membership of a runtime role in another role (e.g. `GRANT pg_read_all_data TO
 * symphony_auditor`) is cluster-wide, outside it, and would give that role powers no
 * migration granted. Runtime roles are members of nothing (INV-ROLE-NO-INHERITED-POWERS).
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

/**
 * The checks `evidence` runs. The declared privilege matrix (issue 12) joins them as
 * `{ name: 'declared privilege matrix', check: checkPrivilegeMatrix }`.
 */
export const PRIVILEGE_CHECKS: readonly PrivilegeCheck[] = [runtimeRoleMemberships];
