import { fileURLToPath } from 'node:url';

/**
 * The invariant register (docs/invariants.md) as data: one row per `| INV-… |` table line,
 * with the tests it cites. Shared by the register check, `npm run verify:proofs` and
 * `symphony-relay evidence`.
 */
export const REGISTER = 'docs/invariants.md';

/** The register of this checkout (docs/ is not part of the published package). */
export const REGISTER_FILE = fileURLToPath(new URL(`../../${REGISTER}`, import.meta.url));

export interface TestReference {
  file: string;
  title: string;
}

export interface RegisterRow {
  line: number;
  id: string;
  statement: string;
  mechanism: string;
  sqlState: string;
  tests: TestReference[];
}

export const ID = /^INV-[A-Z0-9]+(?:-[A-Z0-9]+)*$/;

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
export function parseRegister(markdown: string): RegisterRow[] {
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
