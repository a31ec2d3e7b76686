import type pg from 'pg';
import { describeConnectionFailure } from '../db/connection-failure.ts';
import { isSqlState, SqlState, sqlStateOf } from '../db/errors.ts';
import { createPool } from '../db/pool.ts';
import type { RuntimeRole } from '../db/roles.ts';
import { CliError } from './errors.ts';

export interface SessionOptions {
  connectionString: string;
  /** The command name, for application_name and messages ("enqueue", "status"). */
  command: string;
  /** Runtime role the session acts as (createPool's actAs); omitted = the login itself (owner tasks). */
  actAs?: RuntimeRole;
}

/**
 * Runs `work` on one connection that acts as `actAs`, then closes it. A one-shot command
 * needs exactly one connection, and keeping the same one for the whole command means the
 * role check below covers every query it runs.
 */
export async function withDatabaseSession<T>(
  options: SessionOptions,
  work: (db: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const pool = createPool({
    connectionString: options.connectionString,
    applicationName: `symphony-relay ${options.command}`,
    max: 1,
  });
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (error) {
    await pool.end();
    // A login whose role-level default names a role it may not become is refused (42501)
    // while connecting.
    if (options.actAs && isSqlState(error, SqlState.InsufficientPrivilege)) {
      throw cannotActAs(options, loginOf(options.connectionString), error);
    }
    throw new CliError(
      `${options.command}: ${describeConnectionFailure(error, options.connectionString, 'DATABASE_URL or --database-url')}`,
    );
  }
  // A dropped connection also surfaces as an 'error' event; the query in flight rejects
  // with it anyway, and an unhandled event would crash with a stack trace instead.
  client.on('error', () => undefined);
  try {
    if (options.actAs) await assertActingAs(client, options);
    return await work(client);
  } finally {
    client.release();
    await pool.end();
  }
}

/**
 * Proves the session acts as the runtime role before anything else runs: otherwise the
 * command's queries would run as the login itself, with whatever that role inherits. The
 * switch is the login's role-level default (`roles create-login`), never a startup
 * parameter, so the same command works directly and through PgBouncer.
 */
async function assertActingAs(client: pg.PoolClient, options: SessionOptions): Promise<void> {
  const { rows } = await client.query<{ acting_as: string; login: string }>(
    'SELECT current_user AS acting_as, session_user AS login',
  );
  const row = rows[0];
  if (row?.acting_as !== options.actAs) {
    throw cannotActAs(
      options,
      row?.login ?? loginOf(options.connectionString),
      `its sessions act as "${row?.acting_as}"`,
    );
  }
}

function cannotActAs(options: SessionOptions, login: string, reason: unknown): CliError {
  return new CliError(
    `${options.command}: login role "${login}" does not act as ${options.actAs} (${describe(reason)}). ` +
      `Use a login made with 'symphony-relay roles create-login --name <login> --acts-as ${options.actAs}' ` +
      `(a member of ${options.actAs} whose sessions start as it: ALTER ROLE <login> SET role = '${options.actAs}')`,
  );
}

function loginOf(connectionString: string): string {
  try {
    return decodeURIComponent(new URL(connectionString).username) || '(default user)';
  } catch {
    return '(unknown)';
  }
}

/**
 * A database failure as one line for the operator: the server's message with its SQLSTATE,
 * plus what to do about the common causes. Never includes DETAIL, which can echo row values
 * (payloads).
 */
export function databaseFailure(command: string, role: string | undefined, error: unknown): Error {
  if (error instanceof CliError) return error;
  const code = sqlStateOf(error);
  if (code === undefined) return error instanceof Error ? error : new Error(String(error));
  let advice = '';
  if (isSqlState(error, SqlState.InsufficientPrivilege)) {
    advice = role
      ? `; ${role} lacks a privilege this command needs: check that every migration is applied ('symphony-relay migrate')`
      : '; connect as the schema owner or a member of the role this command needs';
  } else if (code === '42P01' || code === '42883') {
    advice = "; the schema is missing objects: run 'symphony-relay migrate' first";
  }
  return new CliError(`${command} failed in the database: ${describe(error)}${advice}`);
}

function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = sqlStateOf(error);
  return code ? `${message} (SQLSTATE ${code})` : message;
}

/**
 * Runs `work` in one transaction: all of it commits or none of it does. `startedAt` is the
 * transaction timestamp, which is what now() and every column default return inside it.
 */
export async function inTransaction<T>(
  client: pg.PoolClient,
  work: (startedAt: Date) => Promise<T>,
): Promise<T> {
  await client.query('BEGIN');
  try {
    const { rows } = await client.query<{ started_at: Date }>(
      'SELECT transaction_timestamp() AS started_at',
    );
    const startedAt = rows[0]?.started_at;
    if (!startedAt) throw new Error('transaction_timestamp() returned no row');
    const result = await work(startedAt);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    // The connection is discarded after the command either way; a failed ROLLBACK adds nothing.
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}
