/**
 * Fixtures for role-boundary (42501) proofs: clients acting as a runtime role through a
 * LOGIN member (the way services connect), the outbox tables, and one statement per table
 * privilege so a test can try every kind of direct access.
 */
import type pg from 'pg';
import { afterAll } from 'vitest';
import type { TestDatabase } from './database.ts';

export const RUNTIME_ROLES = [
  'symphony_control',
  'symphony_ingest',
  'symphony_executor',
  'symphony_readonly',
  'symphony_auditor',
] as const;
export type RuntimeRole = (typeof RUNTIME_ROLES)[number];

export const OUTBOX_TABLES = [
  'payment_outbox_pending',
  'payment_outbox_attempts',
  'participant_outbox_sequences',
] as const;

export type TablePrivilege = 'SELECT' | 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE';
export const WRITE_PRIVILEGES: TablePrivilege[] = ['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'];
export const ALL_TABLE_PRIVILEGES: TablePrivilege[] = ['SELECT', ...WRITE_PRIVILEGES];

/**
 * A client of a fresh LOGIN role that is a member of `role` and has already run SET ROLE,
 * closed after the test file.
 */
export async function connectAs(db: TestDatabase, role: RuntimeRole): Promise<pg.Client> {
  const login = await db.createLoginRole([role]);
  const client = await login.connect(role);
  afterAll(() => client.end());
  return client;
}

/** Clients for several roles at once, keyed by role. */
export async function connectAsEach<R extends RuntimeRole>(
  db: TestDatabase,
  roles: readonly R[],
): Promise<Record<R, pg.Client>> {
  const entries = await Promise.all(
    roles.map(async (role) => [role, await connectAs(db, role)] as const),
  );
  return Object.fromEntries(entries) as Record<R, pg.Client>;
}

/**
 * A statement that needs exactly `privilege` on `table`. Privileges are checked before
 * any row is read or any constraint evaluated, so the statements need no valid data:
 * the UPDATE assigns a column to itself and matches nothing.
 */
export async function statementNeeding(
  db: TestDatabase,
  privilege: TablePrivilege,
  table: string,
): Promise<string> {
  const qualified = `public.${table}`;
  switch (privilege) {
    case 'SELECT':
      return `SELECT * FROM ${qualified} LIMIT 1`;
    case 'INSERT':
      return `INSERT INTO ${qualified} DEFAULT VALUES`;
    case 'UPDATE': {
      const column = await firstColumn(db, table);
      return `UPDATE ${qualified} SET ${column} = ${column} WHERE false`;
    }
    case 'DELETE':
      return `DELETE FROM ${qualified} WHERE false`;
    case 'TRUNCATE':
      return `TRUNCATE ${qualified}`;
  }
}

async function firstColumn(db: TestDatabase, table: string): Promise<string> {
  const { rows } = await db.owner.query<{ column: string }>(
    `SELECT quote_ident(attname) AS column
       FROM pg_catalog.pg_attribute
      WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
      ORDER BY attnum LIMIT 1`,
    [`public.${table}`],
  );
  const column = rows[0]?.column;
  if (!column) throw new Error(`table public.${table} does not exist or has no columns`);
  return column;
}
