import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readMigrationFiles } from '../../../src/db/migrate/files.ts';
import { migrate, MigrationError, migrationStatus } from '../../../src/db/migrate/runner.ts';
import { freshDatabase } from '../../support/database.ts';
import { migrationDir } from '../../support/migration-fixtures.ts';

async function ledger(db: Awaited<ReturnType<typeof freshDatabase>>) {
  const { rows } = await db.owner.query<{ version: string; checksum_sha256: string }>(
    'SELECT version, checksum_sha256 FROM schema_migrations ORDER BY version',
  );
  return rows;
}

async function migrateError(run: Promise<unknown>): Promise<MigrationError> {
  const error = await run.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(MigrationError);
  return error as MigrationError;
}

describe('migration runner on the real chain', () => {
  it('applies every file on an empty database, and a second run is a no-op', async () => {
    const db = await freshDatabase({ empty: true });
    const files = await readMigrationFiles();
    const first = await migrate(db.ownerUrl);
    expect(first.applied).toEqual(files.map((file) => file.fileName));
    const second = await migrate(db.ownerUrl);
    expect(second.applied).toEqual([]);
    expect(second.alreadyApplied).toHaveLength(files.length);
    expect((await ledger(db)).map((row) => row.checksum_sha256)).toEqual(
      files.map((file) => file.checksum),
    );
  });

  it('records the no-transaction migration 0013 and leaves its index valid', async () => {
    const db = await freshDatabase({ empty: true });
    const noTx = (await readMigrationFiles()).filter((file) => file.noTransaction);
    expect(noTx.map((file) => file.fileName)).toContain(
      '0013_outbox_pending_indexes_concurrently.sql',
    );
    await migrate(db.ownerUrl);
    expect((await ledger(db)).map((row) => row.version)).toContain('0013');
    const invalid = await db.owner.query(
      `SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid`,
    );
    expect(invalid.rows).toEqual([]);
  });

  it('lets two runners race on an empty database and applies each file exactly once', async () => {
    const db = await freshDatabase({ empty: true });
    const files = await readMigrationFiles();
    const results = await Promise.all([1, 2, 3, 4].map(() => migrate(db.ownerUrl)));
    const appliedEverywhere = results.flatMap((result) => result.applied).sort();
    expect(appliedEverywhere).toEqual(files.map((file) => file.fileName).sort());
    expect(await ledger(db)).toHaveLength(files.length);
  });

  it('lists applied and pending versions with checksums', async () => {
    const db = await freshDatabase({ empty: true });
    const before = await migrationStatus(db.ownerUrl);
    expect(before.every((row) => row.state === 'pending')).toBe(true);
    await migrate(db.ownerUrl);
    const after = await migrationStatus(db.ownerUrl);
    expect(
      after.every((row) => row.state === 'applied' && /^[0-9a-f]{64}$/.test(row.checksum)),
    ).toBe(true);
  });
});

describe('migration runner guarantees', () => {
  it('refuses an applied migration whose file was edited, naming the file', async () => {
    const db = await freshDatabase({ empty: true });
    const dir = await migrationDir({ '0001_widgets.sql': 'CREATE TABLE widgets (id int);' });
    await migrate(db.ownerUrl, { dir });
    await writeFile(path.join(dir, '0001_widgets.sql'), 'CREATE TABLE widgets (id bigint);');
    const error = await migrateError(migrate(db.ownerUrl, { dir }));
    expect(error.fileName).toBe('0001_widgets.sql');
    expect(error.message).toMatch(/0001_widgets\.sql was changed after it was applied/);
    expect(error.message).toMatch(/create a new migration instead/);
  });

  it('rolls a failing file back entirely and names the file and SQLSTATE', async () => {
    const db = await freshDatabase({ empty: true });
    const dir = await migrationDir({
      '0001_half.sql': 'CREATE TABLE first_half (id int);\nSELECT 1/0;',
    });
    const error = await migrateError(migrate(db.ownerUrl, { dir }));
    expect(error.sqlState).toBe('22012');
    expect(error.message).toMatch(/0001_half\.sql failed: division by zero \(SQLSTATE 22012\)/);
    const table = await db.owner.query(`SELECT to_regclass('first_half') AS t`);
    expect(table.rows[0].t).toBeNull();
    expect(await ledger(db)).toEqual([]);
  });

  it('rolls a file back when its ledger row cannot be written: file and ledger row commit together', async () => {
    // A file sent as one query string is atomic on its own (PostgreSQL's implicit
    // transaction); only a transaction around file and ledger insert keeps the two together.
    const db = await freshDatabase({ empty: true });
    const dir = await migrationDir({
      '0001_blocks_ledger.sql':
        'CREATE TABLE applied_without_ledger (id int);\n' +
        'ALTER TABLE public.schema_migrations ADD CONSTRAINT no_more_rows CHECK (false) NOT VALID;',
    });
    const error = await migrateError(migrate(db.ownerUrl, { dir }));
    expect(error.sqlState).toBe('23514');
    const table = await db.owner.query(`SELECT to_regclass('applied_without_ledger') AS t`);
    expect(table.rows[0].t).toBeNull();
    expect(await ledger(db)).toEqual([]);
  });

  it('rejects a top-level BEGIN with the lint before applying anything', async () => {
    const db = await freshDatabase({ empty: true });
    const dir = await migrationDir({
      '0001_ok.sql': 'CREATE TABLE ok_table (id int);',
      '0002_tx.sql': 'BEGIN;\nCREATE TABLE bad_table (id int);\nCOMMIT;',
    });
    const error = await migrateError(migrate(db.ownerUrl, { dir }));
    expect(error.fileName).toBe('0002_tx.sql');
    expect(error.message).toMatch(/rejected by the lint: "BEGIN"/);
    const table = await db.owner.query(`SELECT to_regclass('ok_table') AS t`);
    expect(table.rows[0].t).toBeNull();
  });

  it('runs a marked file outside a transaction (CREATE INDEX CONCURRENTLY) and records it', async () => {
    const db = await freshDatabase({ empty: true });
    const dir = await migrationDir({
      '0001_table.sql': 'CREATE TABLE items (v int);',
      '0002_index.sql':
        '-- symphony:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS items_v_idx ON items (v);',
    });
    const result = await migrate(db.ownerUrl, { dir });
    expect(result.applied).toEqual(['0001_table.sql', '0002_index.sql']);
    const index = await db.owner.query(
      `SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass('items_v_idx')`,
    );
    expect(index.rows).toEqual([{ indisvalid: true }]);
  });

  it('rebuilds an INVALID index left by an earlier failed concurrent build', async () => {
    const db = await freshDatabase({ empty: true });
    const dir = await migrationDir({
      '0001_table.sql': 'CREATE TABLE codes (v int);\nINSERT INTO codes VALUES (1), (1);',
      '0002_unique.sql':
        '-- symphony:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS codes_v_ux ON codes (v);',
    });
    const error = await migrateError(migrate(db.ownerUrl, { dir }));
    expect(error.sqlState).toBe('23505');
    expect(error.message).toMatch(/0002_unique\.sql failed/);
    const leftBehind = await db.owner.query(
      `SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass('codes_v_ux')`,
    );
    expect(leftBehind.rows).toEqual([{ indisvalid: false }]);
    expect((await ledger(db)).map((row) => row.version)).toEqual(['0001']);

    await db.owner.query('DELETE FROM codes WHERE ctid = (SELECT min(ctid) FROM codes)');
    const retry = await migrate(db.ownerUrl, { dir });
    expect(retry.applied).toEqual(['0002_unique.sql']);
    const rebuilt = await db.owner.query(
      `SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass('codes_v_ux')`,
    );
    expect(rebuilt.rows).toEqual([{ indisvalid: true }]);
  });

  it('refuses a file name without a numeric version', async () => {
    const db = await freshDatabase({ empty: true });
    const dir = await migrationDir({ 'add_things.sql': 'SELECT 1;' });
    await expect(migrate(db.ownerUrl, { dir })).rejects.toThrow(
      /add_things\.sql has an invalid name: rename it to NNNN_description\.sql/,
    );
  });
});
