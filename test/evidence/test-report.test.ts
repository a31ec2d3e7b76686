import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseRegister } from '../../src/evidence/register.ts';
import { loadTestRun, proofResults, stampFileFor } from '../../src/evidence/test-report.ts';
import { scratchDirectory } from '../support/cli.ts';
import { REPO_ROOT } from '../support/paths.ts';
import { runBinary } from '../support/processes.ts';

const NODE = {
  binary: process.execPath,
  installHint: 'the running Node.js executable disappeared',
};
const VITEST = path.join(REPO_ROOT, 'node_modules/vitest/vitest.mjs');
const COMMIT = 'abc1234def5678abc1234def5678abc1234def56';

/** The reporter arguments `npm test` passes to `vitest run`, from package.json itself. */
async function npmTestReporterArgs(): Promise<string[]> {
  const manifest = JSON.parse(await readFile(path.join(REPO_ROOT, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  };
  const [, vitestArgs = ''] = (manifest.scripts.test ?? '').split('vitest run ');
  return vitestArgs
    .split(' ')
    .filter(Boolean)
    .map((arg) => arg.replace('=./', `=${REPO_ROOT}`));
}

const PROOFS = `
import { expect, it } from 'vitest';
it('INV-DEMO-A: holds', () => expect(1).toBe(1));
it.each([1, 2])('INV-DEMO-B: case %s holds', (n) => expect(n).toBeGreaterThan(0));
it('INV-DEMO-C: is broken', () => expect(1).toBe(2));
it.skip('INV-DEMO-D: is skipped', () => expect(1).toBe(1));
`;

const REGISTER = `
| id | statement | mechanism | SQLSTATE | tests |
| --- | --- | --- | --- | --- |
| INV-DEMO-A | a | m | n/a | test/proofs.test.mjs › INV-DEMO-A: holds |
| INV-DEMO-B | b | m | n/a | test/proofs.test.mjs › INV-DEMO-B: case %s holds |
| INV-DEMO-C | c | m | n/a | test/proofs.test.mjs › INV-DEMO-A: holds<br>test/proofs.test.mjs › INV-DEMO-C: is broken |
| INV-DEMO-D | d | m | n/a | test/proofs.test.mjs › INV-DEMO-D: is skipped |
| INV-DEMO-E | e | m | n/a | test/other.test.mjs › INV-DEMO-E: never written |
`;

describe('the test report npm test writes, as evidence reads it', () => {
  it('Vitest run with npm test’s reporters writes a JSON report and a stamp with the tested commit; each register row gets its result', async () => {
    const project = (await scratchDirectory('vitest-report')).path;
    await mkdir(path.join(project, 'test'));
    await symlink(path.join(REPO_ROOT, 'node_modules'), path.join(project, 'node_modules'));
    await writeFile(path.join(project, 'test/proofs.test.mjs'), PROOFS);
    await writeFile(
      path.join(project, 'vitest.config.mjs'),
      "export default { test: { include: ['test/*.test.mjs'] } };\n",
    );
    const run = await runBinary(NODE, [VITEST, 'run', ...(await npmTestReporterArgs())], {
      cwd: project,
      env: { ...process.env, GIT_COMMIT: COMMIT },
      timeoutMs: 120_000,
    });
    expect(run.code, run.stderr).toBe(1); // INV-DEMO-C fails, and the report is written anyway

    const reportFile = path.join(project, 'reports/vitest.json');
    const stamp = JSON.parse(await readFile(stampFileFor(reportFile), 'utf8')) as unknown;
    expect(stamp).toMatchObject({ commit: COMMIT, source: 'GIT_COMMIT', dirty: false });
    const loaded = await loadTestRun(reportFile);
    expect(loaded.summary).toMatchObject({
      reportFile,
      commit: COMMIT,
      commitSource: 'GIT_COMMIT',
      total: 5,
      passed: 3,
      failed: 1,
      success: false,
    });
    expect(Math.abs(loaded.summary.startedAt.getTime() - Date.now())).toBeLessThan(3_600_000);
    const results = proofResults(parseRegister(REGISTER), loaded).map((row) => [
      row.id,
      row.result,
    ]);
    expect(results).toEqual([
      ['INV-DEMO-A', 'proved'],
      ['INV-DEMO-B', 'proved'],
      ['INV-DEMO-C', 'failed'],
      ['INV-DEMO-D', 'skipped'],
      ['INV-DEMO-E', 'not run'],
    ]);
  });
});
