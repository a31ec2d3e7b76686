import { describe, expect, it } from 'vitest';
import { readMigrationFiles } from '../../../src/db/migrate/files.ts';
import { lintMigrationSql } from '../../../src/db/migrate/lint.ts';

describe('migration lint', () => {
  it.each(['BEGIN;', 'begin transaction;', 'COMMIT;', 'START TRANSACTION;', 'ROLLBACK;', 'END;'])(
    'rejects top-level %s',
    (statement) => {
      expect(lintMigrationSql(`CREATE TABLE t (id int);\n${statement}`)).toHaveLength(1);
    },
  );

  it('accepts PL/pgSQL BEGIN/END inside function bodies, DO blocks, strings and comments', () => {
    const sql = `
      -- BEGIN; in a comment
      /* COMMIT; in a block comment */
      CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $fn$ BEGIN RETURN 1; END; $fn$;
      DO $$ BEGIN PERFORM 1; END $$;
      SELECT 'BEGIN; COMMIT;';
    `;
    expect(lintMigrationSql(sql)).toEqual([]);
  });

  it('passes every migration in the chain', async () => {
    for (const file of await readMigrationFiles()) {
      expect({ file: file.fileName, problems: lintMigrationSql(file.sql) }).toEqual({
        file: file.fileName,
        problems: [],
      });
    }
  });
});
