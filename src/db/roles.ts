import type pg from 'pg';
import type { Queryable } from './pool.ts';

/** The NOLOGIN roles created by 0003_roles.sql that a login role may act as. */
export const RUNTIME_ROLES = [
  'symphony_executor',
  'symphony_ingest',
  'symphony_readonly',
  'symphony_auditor',
  'symphony_control',
] as const;
export type RuntimeRole = (typeof RUNTIME_ROLES)[number];

const LOGIN_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
/** The values templates ship with (deploy/.env.example): never a real secret. */
const PLACEHOLDER_PASSWORD = /change-?me|placeholder|example/i;

/**
 * The relayer's statements are short; one running this long is stuck behind something, and
 * failing it lets the loop retry and /healthz tell. A role-level default because a pooler
 * (PgBouncer) refuses it as a startup parameter.
 */
export const EXECUTOR_STATEMENT_TIMEOUT = '30s';

export interface LoginRoleSpec {
  name: string;
  password: string;
  actsAs: RuntimeRole;
  /**
   * Take over an existing role that `roles create-login` did not create (it carries no
   * marker): its password is replaced, its attributes reduced and every other membership
   * revoked. Without it such a role is refused.
   */
  force?: boolean;
}

/** One row of pg_auth_members for the login, read back after the change. */
export interface Membership {
  role: string;
  inherit: boolean;
  set: boolean;
  admin: boolean;
}

export interface LoginRoleResult {
  /** created: new; updated: one of ours, re-keyed; taken over: an existing role, by --force. */
  action: 'created' | 'updated' | 'taken over';
  /** Memberships the login had before and no longer has (empty when created). */
  revoked: string[];
  /** The login's memberships as the catalog holds them afterwards. */
  memberships: Membership[];
}

/**
 * The COMMENT ON ROLE every login made here carries, so a later run can tell its own logins
 * from any other role of the cluster (which it must never re-key or demote unasked).
 */
export const LOGIN_MARKER = 'symphony-relay login (made by roles create-login)';

/** A role the caller asked for is in a state we will not change; the message says why and what to do. */
export class LoginRoleRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LoginRoleRefused';
  }
}

interface ExistingRole {
  oid: number;
  marker: string | null;
  is_session_user: boolean;
  owned: number;
  attributes: string[];
}

async function existingRole(db: pg.ClientBase, name: string): Promise<ExistingRole | undefined> {
  const { rows } = await db.query<ExistingRole>(
    `SELECT r.oid::int AS oid,
            pg_catalog.shobj_description(r.oid, 'pg_authid') AS marker,
            r.rolname IN (session_user, current_user) AS is_session_user,
            (SELECT count(*)::int FROM pg_catalog.pg_shdepend d
              WHERE d.refclassid = 'pg_catalog.pg_authid'::regclass AND d.refobjid = r.oid
                AND d.deptype IN ('o', 'a', 'r')) AS owned,
            array_remove(ARRAY[
              CASE WHEN r.rolsuper THEN 'SUPERUSER' END,
              CASE WHEN r.rolcreatedb THEN 'CREATEDB' END,
              CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END,
              CASE WHEN r.rolreplication THEN 'REPLICATION' END,
              CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END,
              CASE WHEN r.rolinherit THEN 'INHERIT' END], NULL) AS attributes
       FROM pg_catalog.pg_roles r WHERE r.rolname = $1`,
    [name],
  );
  return rows[0];
}

/** The login's memberships, one row per granted role (several grantors are folded into one). */
export async function loginMemberships(db: Queryable, name: string): Promise<Membership[]> {
  const { rows } = await db.query<Membership>(
    `SELECT g.rolname AS role, bool_or(m.inherit_option) AS inherit,
            bool_or(m.set_option) AS set, bool_or(m.admin_option) AS admin
       FROM pg_catalog.pg_auth_members m
       JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
       JOIN pg_catalog.pg_roles l ON l.oid = m.member
      WHERE l.rolname = $1
      GROUP BY g.rolname ORDER BY g.rolname`,
    [name],
  );
  return rows;
}

/** `symphony_executor (SET TRUE, INHERIT FALSE, ADMIN FALSE)`, for operators. */
export function describeMembership(membership: Membership): string {
  const flag = (on: boolean) => (on ? 'TRUE' : 'FALSE');
  return `${membership.role} (SET ${flag(membership.set)}, INHERIT ${flag(membership.inherit)}, ADMIN ${flag(membership.admin)})`;
}

/**
 * Creates (or re-keys) a LOGIN role that owns nothing and can only SET ROLE to one runtime
 * role: NOINHERIT plus a membership granted WITH INHERIT FALSE, so a session that is not
 * acting as the runtime role has no privileges at all.
 *
 * The switch itself is a role-level default (`ALTER ROLE … SET role = …`): the server
 * performs it when every session starts, before the first query, without any startup
 * parameter, so it survives PgBouncer in session and transaction pooling (which refuses
 * `options` and hands each transaction whichever server connection is free; every one of
 * them starts as the runtime role). RESET ROLE and DISCARD ALL return to it as well.
 *
 * An existing role is changed only when it carries LOGIN_MARKER (one of ours) or `force`
 * is set; never the caller's own role, never a role that owns objects. Every membership is
 * revoked and the one granted again, all in one transaction, and the result is read back
 * from the catalog and checked: the caller prints what is true, not what was intended.
 * Utility statements cannot take bind parameters, so the statements are built server-side
 * with format() and %I/%L quoting.
 */
export async function ensureLoginRole(
  db: pg.ClientBase,
  spec: LoginRoleSpec,
): Promise<LoginRoleResult> {
  if (!LOGIN_NAME.test(spec.name) || spec.name.startsWith('symphony_')) {
    throw new Error(
      `login role name "${spec.name}" is invalid: use lowercase letters, digits and underscores ` +
        '(max 63, not starting with a digit or "symphony_", which is reserved for runtime roles)',
    );
  }
  if (!RUNTIME_ROLES.includes(spec.actsAs)) {
    throw new Error(`cannot act as "${spec.actsAs}": expected one of ${RUNTIME_ROLES.join(', ')}`);
  }
  if (spec.password.length < 12) {
    throw new Error('the login password is too short: use at least 12 characters');
  }
  if (PLACEHOLDER_PASSWORD.test(spec.password)) {
    throw new Error(
      'the login password is a placeholder (it contains "change-me", "changeme", "placeholder" or "example"): set a real secret',
    );
  }
  await db.query('BEGIN');
  try {
    const result = await applyLoginRole(db, spec);
    await db.query('COMMIT');
    return result;
  } catch (error) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

async function applyLoginRole(db: pg.ClientBase, spec: LoginRoleSpec): Promise<LoginRoleResult> {
  const existing = await existingRole(db, spec.name);
  const ours = existing?.marker === LOGIN_MARKER;
  if (existing) refuseUnsafeTakeover(spec, existing, ours, await loginMemberships(db, spec.name));
  const before = existing ? await loginMemberships(db, spec.name) : [];
  const { rows } = await db.query<{ create: string; revoke: string[] | null; rest: string[] }>(
    `SELECT format('%s ROLE %I LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
                   CASE WHEN $5 THEN 'ALTER' ELSE 'CREATE' END, $1::text, $2::text) AS create,
            (SELECT array_agg(format('REVOKE %I FROM %I GRANTED BY %I', g.rolname, $1::text, gr.rolname))
               FROM pg_catalog.pg_auth_members m
               JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
               JOIN pg_catalog.pg_roles l ON l.oid = m.member
               JOIN pg_catalog.pg_roles gr ON gr.oid = m.grantor
              WHERE l.rolname = $1) AS revoke,
            ARRAY[format('ALTER ROLE %I RESET ALL', $1::text),
                  format('GRANT %I TO %I WITH INHERIT FALSE, SET TRUE', $3::text, $1::text),
                  format('ALTER ROLE %I SET role = %L', $1::text, $3::text),
                  CASE WHEN $3::text = 'symphony_executor'
                       THEN format('ALTER ROLE %I SET statement_timeout = %L', $1::text, $4::text)
                       ELSE format('ALTER ROLE %I RESET statement_timeout', $1::text) END,
                  format('COMMENT ON ROLE %I IS %L', $1::text, $6::text)] AS rest`,
    [
      spec.name,
      spec.password,
      spec.actsAs,
      EXECUTOR_STATEMENT_TIMEOUT,
      existing !== undefined,
      LOGIN_MARKER,
    ],
  );
  const statements = rows[0];
  if (!statements) throw new Error('format() returned nothing');
  await db.query(statements.create);
  for (const revoke of statements.revoke ?? []) await db.query(revoke);
  for (const statement of statements.rest) await db.query(statement);

  const memberships = await loginMemberships(db, spec.name);
  const expected: Membership[] = [{ role: spec.actsAs, inherit: false, set: true, admin: false }];
  if (JSON.stringify(memberships) !== JSON.stringify(expected)) {
    throw new LoginRoleRefused(
      `login role ${spec.name} did not end up a member of ${spec.actsAs} only: the catalog shows ` +
        `${memberships.map(describeMembership).join(', ') || 'no membership'}. Nothing was changed; ` +
        'revoke the other memberships as a superuser and run the command again',
    );
  }
  return {
    action: existing === undefined ? 'created' : ours ? 'updated' : 'taken over',
    revoked: before.map((m) => m.role).filter((role) => role !== spec.actsAs),
    memberships,
  };
}

function refuseUnsafeTakeover(
  spec: LoginRoleSpec,
  existing: ExistingRole,
  ours: boolean,
  memberships: Membership[],
): void {
  if (existing.is_session_user) {
    throw new LoginRoleRefused(
      `role ${spec.name} is the role this command is connected as: it would lose the rights it is using. ` +
        'Choose another --name (a login for the relayer or a producer is a role of its own)',
    );
  }
  if (existing.owned > 0) {
    throw new LoginRoleRefused(
      `role ${spec.name} owns, or was granted privileges on, ${existing.owned} object(s) in some database of this cluster: whatever role it acts as, it could still use them. ` +
        `Choose another --name, or first move them away (REASSIGN OWNED BY ${spec.name} TO <owner>; DROP OWNED BY ${spec.name}, in each database) and run the command again`,
    );
  }
  if (ours || spec.force) return;
  const has = [
    existing.attributes.length > 0 ? `attributes ${existing.attributes.join(' ')}` : undefined,
    memberships.length > 0
      ? `memberships ${memberships.map((m) => m.role).join(', ')}`
      : 'no memberships',
  ].filter(Boolean);
  throw new LoginRoleRefused(
    `role ${spec.name} already exists and was not made by roles create-login (it has no marker; ${has.join(', ')}). ` +
      'Nothing was changed. Choose another --name, or add --force to replace its password, drop those attributes and ' +
      `revoke every membership but ${spec.actsAs} (a login made before the marker existed needs --force once)`,
  );
}
