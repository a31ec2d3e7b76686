import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseRegister, REGISTER } from '../support/invariant-register.ts';
import { REPO_ROOT } from '../support/paths.ts';
import { MUTATIONS, NOT_MUTATED } from './mutations.ts';

const rows = parseRegister(readFileSync(path.join(REPO_ROOT, REGISTER), 'utf8'));
const ids = new Set(rows.map((row) => row.id));

// Checked on every `npm test`, so the list cannot silently drift from the register or the
// code it patches; whether each mutation is killed is `npm run verify:proofs` (scheduled).
describe('the proof mutations (test/proofs/mutations.ts)', () => {
  it('name only rows of the register, and every row has a mutation or a reason why not', () => {
    const mutated = new Set(MUTATIONS.map((mutation) => mutation.row));
    expect([...mutated].filter((id) => !ids.has(id))).toEqual([]);
    expect(Object.keys(NOT_MUTATED).filter((id) => !ids.has(id))).toEqual([]);
    expect(Object.keys(NOT_MUTATED).filter((id) => mutated.has(id))).toEqual([]);
    expect([...ids].filter((id) => !mutated.has(id) && !(id in NOT_MUTATED))).toEqual([]);
  });

  it('each mutation changes something, and each source patch finds its text exactly once', () => {
    const problems = MUTATIONS.flatMap((mutation) => {
      if (!mutation.sql && !mutation.patches?.length) return [`${mutation.row}: changes nothing`];
      return (mutation.patches ?? []).flatMap(({ file, find }) => {
        const absolute = path.join(REPO_ROOT, file);
        if (!existsSync(absolute)) return [`${mutation.row}: ${file} does not exist`];
        const count = readFileSync(absolute, 'utf8').split(find).length - 1;
        return count === 1
          ? []
          : [`${mutation.row}: ${file} contains ${JSON.stringify(find)} ${count} times`];
      });
    });
    expect(problems).toEqual([]);
  });
});
