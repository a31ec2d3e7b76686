/**
 * Test reports for `symphony-relay evidence`: files in the shape of Vitest's JSON report
 * (`--reporter=json`) and the run stamp `npm test` writes next to it, citing the register's
 * own tests, so a test can say which proofs passed, failed or never ran.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stampFileFor, type TestRunStamp } from '../../src/evidence/test-report.ts';
import { parseRegister, REGISTER } from './invariant-register.ts';
import { REPO_ROOT } from './paths.ts';

/** A commit id of the tested code that a test sets as GIT_COMMIT for the command, too. */
export const TESTED_COMMIT = 'e1de7ce0000000000000000000000000000000aa';

export interface ReportOptions {
  /** Titles (as the register cites them) reported as failed. */
  failed?: string[];
  /** Titles left out of the report, as if their file never ran. */
  absent?: string[];
  /** The stamp's commit; TESTED_COMMIT unless given. */
  commit?: string;
  dirty?: boolean;
}

/**
 * Writes `<dir>/vitest.json` and its stamp: every test the register cites, passed unless
 * `options` says otherwise. Returns the report's path.
 */
export async function writeTestReport(dir: string, options: ReportOptions = {}): Promise<string> {
  const rows = parseRegister(readFileSync(path.join(REPO_ROOT, REGISTER), 'utf8'));
  const byFile = new Map<string, Set<string>>();
  for (const row of rows) {
    for (const test of row.tests) {
      if (options.absent?.includes(test.title)) continue;
      byFile.set(test.file, (byFile.get(test.file) ?? new Set()).add(test.title));
    }
  }
  const startTime = Date.now();
  let passed = 0;
  let failed = 0;
  const testResults = [...byFile].map(([file, titles]) => ({
    name: path.join(REPO_ROOT, file),
    status: 'passed',
    startTime,
    endTime: startTime,
    message: '',
    assertionResults: [...titles].map((title) => {
      const status = options.failed?.includes(title) ? 'failed' : 'passed';
      if (status === 'failed') failed += 1;
      else passed += 1;
      return { ancestorTitles: [], fullName: title, title, status, failureMessages: [] };
    }),
  }));
  const report = {
    numTotalTests: passed + failed,
    numPassedTests: passed,
    numFailedTests: failed,
    numPendingTests: 0,
    numTodoTests: 0,
    startTime,
    success: failed === 0,
    testResults,
  };
  const file = path.join(dir, 'vitest.json');
  await writeFile(file, JSON.stringify(report));
  const stamp: TestRunStamp = {
    startTime,
    commit: options.commit ?? TESTED_COMMIT,
    source: 'GIT_COMMIT',
    dirty: options.dirty ?? false,
  };
  await writeFile(stampFileFor(file), JSON.stringify(stamp));
  return file;
}
