import { outboxCurrentLimits, type OutboxLimits } from '../db/outbox.ts';
import { activePolicy } from '../db/policy.ts';
import { describeConnectionFailure } from '../db/connection-failure.ts';
import { isSqlState, SqlState } from '../db/errors.ts';
import type { Queryable } from '../db/pool.ts';

export class BootCheckError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BootCheckError';
  }
}

export interface RuntimeIdentity {
  login: string;
  /** The session's statement_timeout as PostgreSQL shows it; "0" means none. */
  statementTimeout: string;
}

/**
 * Fail closed unless a session of this login acts as the runtime role from its start. Asked
 * on the worker's own pool, so its first connection is the one checked, made exactly as the
 * others (no startup parameters, so it works through PgBouncer): the switch must come from
 * the login's role-level default, which `roles create-login` sets. A connection of its own
 * for this one question cost every start 35-44 ms of CPU on the 2-core bench machine (issue
 * 9). Checked before anything else, so the message can say exactly what to grant or set.
 */
export async function assertActsAsRuntimeRole(
  db: Queryable,
  connectionString: string,
  role: string,
): Promise<RuntimeIdentity> {
  try {
    const { rows } = await db.query<{
      login: string;
      acting_as: string;
      member: boolean;
      superuser: boolean;
      statement_timeout: string;
    }>(
      `SELECT session_user AS login,
              current_user AS acting_as,
              pg_has_role(session_user, $1, 'MEMBER') AS member,
              (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user) AS superuser,
              current_setting('statement_timeout') AS statement_timeout`,
      [role],
    );
    const row = rows[0];
    if (!row?.member) {
      throw new BootCheckError(
        `database role "${row?.login}" is not a member of ${role}: the relayer only acts through ${role}'s functions. ` +
          `Create a proper login with 'symphony-relay roles create-login --name ${row?.login}' (or GRANT ${role} TO "${row?.login}")`,
      );
    }
    if (row.superuser) {
      throw new BootCheckError(
        `database role "${row.login}" is a superuser: refusing to run with more privilege than ${role}. ` +
          `Use a dedicated login role ('symphony-relay roles create-login')`,
      );
    }
    if (row.acting_as !== role) {
      throw new BootCheckError(
        `sessions of database role "${row.login}" act as "${row.acting_as}", not ${role}: refusing to run as anything but ${role}. ` +
          `Set the login's role-level default with 'symphony-relay roles create-login --name ${row.login}' ` +
          `(ALTER ROLE "${row.login}" SET role = '${role}')`,
      );
    }
    return { login: row.login, statementTimeout: row.statement_timeout };
  } catch (error) {
    if (error instanceof BootCheckError) throw error;
    if (isSqlState(error, SqlState.InsufficientPrivilege)) {
      throw new BootCheckError(
        `the login in DATABASE_URL may not become the role its sessions are set to start as (${(error as Error).message}): ` +
          `grant it with 'symphony-relay roles create-login --name <login>' (a member of ${role} only)`,
      );
    }
    const code = (error as { code?: string }).code;
    if (code === '42704') {
      throw new BootCheckError(
        `role ${role} does not exist in this database cluster: run 'symphony-relay migrate' first`,
      );
    }
    throw new BootCheckError(
      `the identity check failed: ${describeConnectionFailure(error, connectionString)}`,
    );
  }
}

/** The relayer must not move money without a governing policy. */
export async function assertActivePolicy(db: Queryable): Promise<{ version: string }> {
  const policy = await activePolicy(db).catch((error: { code?: string; message: string }) => {
    if (error.code === '42P01') {
      throw new BootCheckError(
        "policy_versions does not exist: run 'symphony-relay migrate' first",
      );
    }
    throw error;
  });
  if (!policy) {
    throw new BootCheckError(
      "no ACTIVE policy in policy_versions: the relayer refuses to start without one. Seed it with 'symphony-relay policy seed --file <policy.json>'",
    );
  }
  return policy;
}

/**
 * The operator limits bind the relayer too: a lease longer than the database allows would
 * have every claim refused, so start is refused instead, saying which limit and what to do.
 */
export async function assertWithinOperatorLimits(
  db: Queryable,
  wanted: { leaseSeconds: number },
): Promise<OutboxLimits> {
  const limits = await outboxCurrentLimits(db);
  if (wanted.leaseSeconds > limits.maxLeaseSeconds) {
    throw new BootCheckError(
      `SYMPHONY_LEASE_SECONDS=${wanted.leaseSeconds} exceeds the database's outbox_limits.max_lease_seconds (${limits.maxLeaseSeconds}): ` +
        "lower SYMPHONY_LEASE_SECONDS, or have an operator raise the limit ('symphony-relay limits set --name max_lease_seconds ...')",
    );
  }
  return limits;
}
