import pg from 'pg';
import { readMigrationFiles, MIGRATIONS_DIR, type MigrationFile } from './files.ts';
import { lintMigrationSql } from './lint.ts';
import type { Queryable } from '../pool.ts';
import { splitStatements } from './sql-statements.ts';
import { assignSchemaOwner } from './ownership.ts';

/** Any constant works; it only has to be the same for every runner of this schema. */
export const MIGRATION_LOCK_KEY = 7_316_150_001;

const LEDGER_DDL = `
CREATE TABLE IF NOT EXISTS public.schema_migrations (
  version         TEXT PRIMARY KEY,
  description     TEXT NOT NULL,
  checksum_sha256 TEXT NOT NULL,
  applied_at      TIMESTAMPTZ NOT NULL DEFAULT now()
)`;

export class MigrationError extends Error {
  constructor(
    readonly fileName: string,
    message: string,
    readonly sqlState?: string,
  ) {
    super(message);
    this.name = 'MigrationError';
  }
}

export interface MigrateOptions {
  dir?: string;
  /**
   * Longest wait for the migration lock (another runner, or any session holding its key);
   * then migrate fails naming the holder. Default DEFAULT_MIGRATION_LOCK_WAIT_MS.
   */
  lockWaitMs?: number;
  /** Called once per file applied; the CLI prints it. */
  onApplied?: (file: MigrationFile, millis: number) => void;
}

export interface MigrateResult {
  applied: string[];
  alreadyApplied: string[];
}

export interface MigrationStatusRow {
  version: string;
  fileName: string;
  checksum: string;
  state: 'applied' | 'pending';
  appliedAt: Date | null;
}

export interface LedgerRow {
  version: string;
  checksum_sha256: string;
  applied_at: Date;
}

type Connection = string | pg.ClientConfig;

async function withClient<T>(connection: Connection, work: (client: pg.Client) => Promise<T>) {
  const client = new pg.Client(
    typeof connection === 'string'
      ? { connectionString: connection, application_name: 'symphony-relay migrate' }
      : { application_name: 'symphony-relay migrate', ...connection },
  );
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** The applied migrations by version; empty when the database was never migrated. */
export async function readLedger(client: Queryable): Promise<Map<string, LedgerRow>> {
  const exists = await client.query<{ present: boolean }>(
    `SELECT to_regclass('public.schema_migrations') IS NOT NULL AS present`,
  );
  if (!exists.rows[0]?.present) return new Map();
  const { rows } = await client.query<LedgerRow>(
    'SELECT version, checksum_sha256, applied_at FROM public.schema_migrations ORDER BY version',
  );
  return new Map(rows.map((row) => [row.version, row]));
}

function assertUnchanged(file: MigrationFile, ledger: Map<string, LedgerRow>): boolean {
  const row = ledger.get(file.version);
  if (!row) return false;
  if (row.checksum_sha256 !== file.checksum) {
    throw new MigrationError(
      file.fileName,
      `migration ${file.fileName} was changed after it was applied ` +
        `(ledger checksum ${row.checksum_sha256.slice(0, 12)}…, file checksum ${file.checksum.slice(0, 12)}…). ` +
        'Applied migrations are immutable: restore the file and create a new migration instead.',
    );
  }
  return true;
}

function assertLintClean(file: MigrationFile): void {
  const problems = lintMigrationSql(file.sql);
  const first = problems[0];
  if (first) {
    throw new MigrationError(
      file.fileName,
      `migration ${file.fileName} is rejected by the lint: "${first.statement}": ${first.reason}. ` +
        'Remove the statement; nothing was applied.',
    );
  }
}

function failure(file: MigrationFile, error: unknown, applied: string): MigrationError {
  const pgError = error as { message?: string; code?: string };
  const state = pgError.code ? ` (SQLSTATE ${pgError.code})` : '';
  return new MigrationError(
    file.fileName,
    `migration ${file.fileName} failed: ${pgError.message ?? String(error)}${state}. ${applied} ` +
      'Fix the cause (or, if the file is already on main, add a new migration) and run migrate again.',
    pgError.code,
  );
}

async function recordInLedger(client: pg.Client, file: MigrationFile): Promise<void> {
  await client.query(
    'INSERT INTO public.schema_migrations (version, description, checksum_sha256) VALUES ($1, $2, $3)',
    [file.version, file.description, file.checksum],
  );
}

async function applyInTransaction(client: pg.Client, file: MigrationFile): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(file.sql);
    await assignSchemaOwner(client);
    await recordInLedger(client, file);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw failure(
      file,
      error,
      'The transaction was rolled back; nothing from this file was applied.',
    );
  }
}

const CONCURRENT_INDEX =
  /CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?("?[\w.]+"?)/i;

/**
 * A CREATE INDEX CONCURRENTLY that failed half way leaves an INVALID index behind,
 * and IF NOT EXISTS would then silently keep it. Drop it so the build starts over.
 */
async function dropInvalidIndex(client: pg.Client, statement: string): Promise<void> {
  const name = CONCURRENT_INDEX.exec(statement)?.[1];
  if (!name) return;
  const { rows } = await client.query<{ qualified: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS qualified
       FROM pg_catalog.pg_class c
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
      WHERE c.oid = to_regclass($1) AND NOT i.indisvalid`,
    [name],
  );
  const invalid = rows[0];
  if (invalid) await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${invalid.qualified}`);
}

async function applyWithoutTransaction(client: pg.Client, file: MigrationFile): Promise<void> {
  const statements = splitStatements(file.sql);
  for (const [index, statement] of statements.entries()) {
    try {
      await dropInvalidIndex(client, statement);
      await client.query(statement);
    } catch (error) {
      throw failure(
        file,
        error,
        `This file runs without a transaction: statements 1–${index} took effect, statement ${index + 1} did not, ` +
          'and the file is not recorded in the ledger. Its statements must be safe to re-run.',
      );
    }
  }
  try {
    await assignSchemaOwner(client);
    await recordInLedger(client, file);
  } catch (error) {
    throw failure(file, error, 'Its statements ran but the ledger row was not written.');
  }
}

const LOCK_POLL_MILLIS = 100;
/** A whole chain applies in seconds; a wait this long means a stuck or hostile holder. */
export const DEFAULT_MIGRATION_LOCK_WAIT_MS = 60_000;

/** migrate gave up waiting for the migration lock; the message names who holds it. */
export class MigrationLockTimeout extends Error {
  constructor(
    message: string,
    readonly holderPid: number | undefined,
  ) {
    super(message);
    this.name = 'MigrationLockTimeout';
  }
}

interface LockHolder {
  pid: number;
  usename: string | null;
  application_name: string | null;
  client_addr: string | null;
  state: string | null;
}

/** The session holding the migration lock in this database, as far as pg_locks tells. */
async function migrationLockHolder(client: pg.Client): Promise<LockHolder | undefined> {
  // A bigint advisory key is stored as classid (high 32 bits), objid (low 32 bits), objsubid 1.
  const { rows } = await client.query<LockHolder>(
    `SELECT l.pid, a.usename::text, a.application_name, a.client_addr::text, a.state
       FROM pg_catalog.pg_locks l
       LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
        AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
        AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid
      LIMIT 1`,
    [MIGRATION_LOCK_KEY],
  );
  return rows[0];
}

function describeHolder(holder: LockHolder | undefined): string {
  if (!holder) return 'a session that released it as we looked';
  const details = [
    holder.usename ? `role ${holder.usename}` : undefined,
    holder.application_name ? `application "${holder.application_name}"` : undefined,
    holder.client_addr ? `from ${holder.client_addr}` : undefined,
    holder.state ? `state ${holder.state}` : undefined,
  ].filter(Boolean);
  return `pid ${holder.pid}${details.length > 0 ? ` (${details.join(', ')})` : ''}`;
}

/**
 * Polls instead of blocking in pg_advisory_lock: a runner blocked inside that statement
 * holds a snapshot, and CREATE INDEX CONCURRENTLY in the lock holder's no-transaction
 * migration waits for every older snapshot to end, so the two would deadlock. Between
 * polls a waiting runner holds nothing. The key is computable by anyone who can read this
 * file and any login may take an advisory lock, so the wait is bounded and the failure
 * names the holder.
 */
async function acquireMigrationLock(client: pg.Client, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const { rows } = await client.query<{ locked: boolean }>(
      'SELECT pg_try_advisory_lock($1) AS locked',
      [MIGRATION_LOCK_KEY],
    );
    if (rows[0]?.locked) return;
    if (Date.now() >= deadline) {
      const holder = await migrationLockHolder(client);
      throw new MigrationLockTimeout(
        `migrate waited ${Math.round(waitMs / 1000)} s for the migration lock (advisory lock ${MIGRATION_LOCK_KEY} ` +
          `in database ${client.database ?? '?'}) and gave up: it is held by ${describeHolder(holder)}. ` +
          'If another migrate is running, let it finish and run migrate again; otherwise end that session ' +
          `(SELECT pg_terminate_backend(${holder?.pid ?? '<pid>'}) as a superuser) and run migrate again. Nothing was applied.`,
        holder?.pid,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MILLIS));
  }
}

/**
 * Applies every pending migration in version order. Safe to run from several
 * processes at once: a session advisory lock serialises them and each re-reads the
 * ledger after taking it, so every file is applied exactly once.
 */
export async function migrate(
  connection: Connection,
  options: MigrateOptions = {},
): Promise<MigrateResult> {
  const files = await readMigrationFiles(options.dir ?? MIGRATIONS_DIR);
  files.forEach(assertLintClean);
  return withClient(connection, async (client) => {
    await acquireMigrationLock(client, options.lockWaitMs ?? DEFAULT_MIGRATION_LOCK_WAIT_MS);
    try {
      await client.query(LEDGER_DDL);
      const ledger = await readLedger(client);
      const result: MigrateResult = { applied: [], alreadyApplied: [] };
      for (const file of files) {
        if (assertUnchanged(file, ledger)) {
          result.alreadyApplied.push(file.fileName);
          continue;
        }
        const started = Date.now();
        if (file.noTransaction) await applyWithoutTransaction(client, file);
        else await applyInTransaction(client, file);
        result.applied.push(file.fileName);
        options.onApplied?.(file, Date.now() - started);
      }
      return result;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
    }
  });
}

/** Applied and pending versions with checksums; also verifies applied files are unchanged. */
export async function migrationStatus(
  connection: Connection,
  options: Pick<MigrateOptions, 'dir'> = {},
): Promise<MigrationStatusRow[]> {
  const files = await readMigrationFiles(options.dir ?? MIGRATIONS_DIR);
  return withClient(connection, async (client) => {
    const ledger = await readLedger(client);
    return files.map((file) => {
      const applied = assertUnchanged(file, ledger);
      return {
        version: file.version,
        fileName: file.fileName,
        checksum: file.checksum,
        state: applied ? 'applied' : 'pending',
        appliedAt: ledger.get(file.version)?.applied_at ?? null,
      } satisfies MigrationStatusRow;
    });
  });
}
