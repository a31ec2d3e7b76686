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

export interface LoginRoleSpec {
  name: string;
  password: string;
  actsAs: RuntimeRole;
}

/**
 * The relayer's statements are short; one running this long is stuck behind something, and
 * failing it lets the loop retry and /healthz tell. A role-level default because a pooler
 * (PgBouncer) refuses it as a startup parameter.
 */
export const EXECUTOR_STATEMENT_TIMEOUT = '30s';

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
 * Utility statements cannot take bind parameters, so the statements are built server-side
 * with format() and %I/%L quoting.
 */
export async function ensureLoginRole(
  db: Queryable,
  spec: LoginRoleSpec,
): Promise<'created' | 'updated'> {
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
  const exists = await db.query('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [
    spec.name,
  ]);
  const verb = exists.rowCount ? 'ALTER' : 'CREATE';
  const { rows } = await db.query<{
    create: string;
    grant: string;
    role: string;
    timeout: string;
  }>(
    `SELECT format('${verb} ROLE %I LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L', $1::text, $2::text) AS create,
            format('GRANT %I TO %I WITH INHERIT FALSE, SET TRUE', $3::text, $1::text) AS grant,
            format('ALTER ROLE %I SET role = %L', $1::text, $3::text) AS role,
            CASE WHEN $3::text = 'symphony_executor'
                 THEN format('ALTER ROLE %I SET statement_timeout = %L', $1::text, $4::text)
                 ELSE format('ALTER ROLE %I RESET statement_timeout', $1::text) END AS timeout`,
    [spec.name, spec.password, spec.actsAs, EXECUTOR_STATEMENT_TIMEOUT],
  );
  const statements = rows[0];
  if (!statements) throw new Error('format() returned nothing');
  await db.query(statements.create);
  await db.query(statements.grant);
  await db.query(statements.role);
  await db.query(statements.timeout);
  return exists.rowCount ? 'updated' : 'created';
}
