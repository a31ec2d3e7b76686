import pg from 'pg';
import { outboxCurrentLimits, type OutboxLimits } from '../db/outbox.ts';
import { activePolicy } from '../db/policy.ts';
import type { Queryable } from '../db/pool.ts';

export class BootCheckError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BootCheckError';
  }
}

/**
 * Fail closed unless the login role may act as the runtime role. Checked on a plain
 * connection before any SET ROLE, so the message can say exactly what to grant.
 */
export async function assertActsAsRuntimeRole(
  connectionString: string,
  role: string,
): Promise<void> {
  const client = new pg.Client({ connectionString, application_name: 'symphony-relay boot check' });
  await client.connect();
  try {
    const { rows } = await client.query<{ login: string; member: boolean; superuser: boolean }>(
      `SELECT session_user AS login,
              pg_has_role(session_user, $1, 'MEMBER') AS member,
              (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user) AS superuser`,
      [role],
    );
    const row = rows[0];
    if (!row?.member) {
      throw new BootCheckError(
        `database role "${row?.login}" is not a member of ${role}: the relayer only acts through ${role}'s functions. ` +
          `Grant it (GRANT ${role} TO "${row?.login}") or create a proper login with 'symphony-relay roles create-login'`,
      );
    }
    if (row.superuser) {
      throw new BootCheckError(
        `database role "${row.login}" is a superuser: refusing to run with more privilege than ${role}. ` +
          `Use a dedicated login role ('symphony-relay roles create-login')`,
      );
    }
  } catch (error) {
    if (error instanceof BootCheckError) throw error;
    const code = (error as { code?: string }).code;
    if (code === '42704') {
      throw new BootCheckError(
        `role ${role} does not exist in this database cluster: run 'symphony-relay migrate' first`,
      );
    }
    throw error;
  } finally {
    await client.end();
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
