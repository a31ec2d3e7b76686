import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ID, parseRegister, REGISTER, type RegisterRow } from '../support/invariant-register.ts';
import { declaredTestTitles } from '../support/test-titles.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MIGRATIONS = 'schema/migrations';

/** A cited title counts only as the title of a running test (`it(…)`/`test(…)`) in the file. */
function fileDeclaresTest(file: string, title: string): boolean {
  return declaredTestTitles(readFileSync(file, 'utf8'), file).includes(title);
}

const rows = parseRegister(readFileSync(path.join(ROOT, REGISTER), 'utf8'));
const describeRow = (row: RegisterRow) => `${REGISTER}:${row.line} ${row.id}`;

describe('invariant register (docs/invariants.md)', () => {
  it('lists invariants, each with a well-formed unique id, a statement, a mechanism and a SQLSTATE', () => {
    expect(rows.length).toBeGreaterThan(0);
    const problems = rows.flatMap((row) => [
      ...(ID.test(row.id) ? [] : [`${describeRow(row)}: id is not INV-UPPER-CASE`]),
      ...(row.statement ? [] : [`${describeRow(row)}: no statement`]),
      ...(row.mechanism ? [] : [`${describeRow(row)}: no mechanism`]),
      ...(row.sqlState
        ? []
        : [`${describeRow(row)}: no SQLSTATE (write "n/a (catalog)" when none applies)`]),
    ]);
    const seen = new Set<string>();
    for (const row of rows) {
      if (seen.has(row.id)) problems.push(`${describeRow(row)}: duplicate id`);
      seen.add(row.id);
    }
    expect(problems).toEqual([]);
  });

  it('names, for every invariant, at least one test that exists in the named file', () => {
    const problems = rows.flatMap((row) => {
      if (row.tests.length === 0) return [`${describeRow(row)}: no proving test`];
      return row.tests.flatMap(({ file, title }) => {
        if (!file.startsWith('test/') || !file.endsWith('.test.ts') || !title) {
          return [`${describeRow(row)}: "${file} › ${title}" is not "test/….test.ts › test title"`];
        }
        const absolute = path.join(ROOT, file);
        if (!existsSync(absolute)) return [`${describeRow(row)}: ${file} does not exist`];
        return fileDeclaresTest(absolute, title)
          ? []
          : [`${describeRow(row)}: ${file} has no test titled "${title}"`];
      });
    });
    expect(problems).toEqual([]);
  });

  it('registers every invariant id a migration raises or documents', () => {
    const registered = new Set(rows.map((row) => row.id));
    const unregistered = readdirSync(path.join(ROOT, MIGRATIONS))
      .filter((name) => name.endsWith('.sql'))
      .sort()
      .flatMap((name) => {
        const sql = readFileSync(path.join(ROOT, MIGRATIONS, name), 'utf8');
        const ids = new Set(sql.match(/INV-[A-Z0-9]+(?:-[A-Z0-9]+)*/g) ?? []);
        return [...ids]
          .filter((id) => !registered.has(id))
          .map((id) => `${MIGRATIONS}/${name}: ${id}`);
      });
    expect(unregistered).toEqual([]);
  });

  it('counts a cited title only where it is the title of a running test', () => {
    const source = [
      "// it('in a comment', () => {})",
      "const text = 'in a string';",
      "it('a real test', () => {});",
      "test.each([1])('a table test %s', () => {});",
      "it.skip('a skipped test', () => {});",
      "describe('a describe block', () => {});",
    ].join('\n');
    expect(declaredTestTitles(source)).toEqual(['a real test', 'a table test %s']);
  });
});
