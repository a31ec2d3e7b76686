import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { declaredTestTitles } from '../support/test-titles.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const REGISTER = 'docs/invariants.md';
const MIGRATIONS = 'schema/migrations';

interface TestReference {
  file: string;
  title: string;
}

interface RegisterRow {
  line: number;
  id: string;
  statement: string;
  mechanism: string;
  sqlState: string;
  tests: TestReference[];
}

const ID = /^INV-[A-Z0-9]+(?:-[A-Z0-9]+)*$/;

function parseTests(cell: string): TestReference[] {
  return cell
    .split('<br>')
    .map((reference) => reference.trim())
    .filter(Boolean)
    .map((reference) => {
      const [file = '', ...title] = reference.split(' › ');
      return { file: file.trim(), title: title.join(' › ').trim() };
    });
}

/** Rows are the table lines whose first cell is an invariant id; headers and prose are skipped. */
function parseRegister(markdown: string): RegisterRow[] {
  return markdown.split('\n').flatMap((text, index) => {
    if (!/^\|\s*INV-/.test(text)) return [];
    const cells = text
      .trim()
      .replace(/^\|/, '')
      .replace(/\|$/, '')
      .split('|')
      .map((cell) => cell.trim());
    if (cells.length !== 5) {
      throw new Error(
        `${REGISTER}:${index + 1} has ${cells.length} cells; expected id | statement | mechanism | SQLSTATE | tests`,
      );
    }
    const [id = '', statement = '', mechanism = '', sqlState = '', tests = ''] = cells;
    return [{ line: index + 1, id, statement, mechanism, sqlState, tests: parseTests(tests) }];
  });
}

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
