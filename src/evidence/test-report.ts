import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PACKAGE_ROOT, type SourceCommit } from '../build-info.ts';
import type { RegisterRow, TestReference } from './register.ts';

/** Where `npm test` writes Vitest's JSON report (package.json's test script). */
export const TEST_REPORT_FILE = path.join(PACKAGE_ROOT, 'reports', 'vitest.json');

/**
 * The stamp the run-stamp reporter writes next to a JSON report: what Vitest's report does
 * not say (the commit that was tested). reports/vitest.json → reports/vitest.run.json.
 */
export function stampFileFor(reportFile: string): string {
  return reportFile.replace(/(\.json)?$/, '.run.json');
}

export interface TestRunStamp extends SourceCommit {
  /** Epoch milliseconds at the start of the run (the JSON report's startTime, give or take). */
  startTime: number;
}

/** The parts of Vitest's JSON report (`--reporter=json`) that evidence reads. */
interface VitestJsonReport {
  startTime: number;
  success: boolean;
  numTotalTests: number;
  numPassedTests: number;
  numFailedTests: number;
  testResults: {
    name: string;
    assertionResults: { title: string; status: string }[];
  }[];
}

export interface TestRunSummary {
  reportFile: string;
  /** The run stamp read with the report; null when there is none for this run. */
  stampFile: string | null;
  startedAt: Date;
  /** From the stamp; null when there is none or the run did not know its commit. */
  commit: string | null;
  commitSource: SourceCommit['source'];
  dirty: boolean;
  total: number;
  passed: number;
  failed: number;
  success: boolean;
}

/** A cited test's fate in the report: `not run` when no test of that file and title is in it. */
export type TestResult = 'passed' | 'failed' | 'skipped' | 'not run';

export interface ProofEvidence {
  id: string;
  /** `proved` only when every cited test ran and passed. */
  result: 'proved' | 'failed' | 'skipped' | 'not run';
  tests: (TestReference & { result: TestResult })[];
}

export interface LoadedTestRun {
  summary: TestRunSummary;
  /** Statuses by test file (the absolute path Vitest records, with '/') and test title. */
  results: Map<string, Map<string, string[]>>;
}

/** A stamp this far from the report's start time was written by another run. */
const STAMP_TOLERANCE_MS = 60_000;

function isReport(value: unknown): value is VitestJsonReport {
  const report = value as Partial<VitestJsonReport> | null;
  return (
    typeof report === 'object' &&
    report !== null &&
    typeof report.startTime === 'number' &&
    Array.isArray(report.testResults)
  );
}

async function readStamp(reportFile: string, startTime: number): Promise<TestRunStamp | null> {
  try {
    const stamp = JSON.parse(await readFile(stampFileFor(reportFile), 'utf8')) as TestRunStamp;
    if (typeof stamp.startTime !== 'number') return null;
    return Math.abs(stamp.startTime - startTime) <= STAMP_TOLERANCE_MS ? stamp : null;
  } catch {
    return null;
  }
}

/** No report at the path: proofs were not recorded here (not the same as a bad report). */
export class MissingTestReport extends Error {}

/** Reads a JSON report and its stamp; throws an Error with a one-line reason when it cannot. */
export async function loadTestRun(reportFile: string): Promise<LoadedTestRun> {
  let text: string;
  try {
    text = await readFile(reportFile, 'utf8');
  } catch {
    throw new MissingTestReport(
      `no test report at ${reportFile}: run \`npm test\` (it writes one), or pass --test-report <file>`,
    );
  }
  let report: unknown;
  try {
    report = JSON.parse(text);
  } catch {
    throw new Error(`the test report ${reportFile} is not JSON: run \`npm test\` again`);
  }
  if (!isReport(report)) {
    throw new Error(`${reportFile} is not a Vitest JSON report (no startTime or testResults)`);
  }
  const stamp = await readStamp(reportFile, report.startTime);
  const results = new Map<string, Map<string, string[]>>();
  for (const file of report.testResults) {
    const titles = new Map<string, string[]>();
    for (const test of file.assertionResults) {
      titles.set(test.title, [...(titles.get(test.title) ?? []), test.status]);
    }
    results.set(file.name.split(path.sep).join('/'), titles);
  }
  return {
    summary: {
      reportFile,
      stampFile: stamp ? stampFileFor(reportFile) : null,
      startedAt: new Date(report.startTime),
      commit: stamp?.commit ?? null,
      commitSource: stamp?.source ?? 'unknown',
      dirty: stamp?.dirty ?? false,
      total: report.numTotalTests,
      passed: report.numPassedTests,
      failed: report.numFailedTests,
      success: report.success,
    },
    results,
  };
}

/**
 * A cited title as a pattern over the titles Vitest reports: `it.each` formats `%s`, `%d`,
 * `%j`, … and `$name` into each case's title, so the register's template matches every case.
 */
function titlePattern(title: string): RegExp {
  const escaped = title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = escaped
    .replace(/%%/g, '%')
    .replace(/%[sdifjoOc]/g, '.+?')
    .replace(/%#/g, '\\d+')
    .replace(/\\\$[A-Za-z_][\w.]*/g, '.+?');
  return new RegExp(`^${pattern}$`, 's');
}

/**
 * The statuses of the tests a register reference names. The report holds absolute paths
 * (of whichever checkout ran the suite), the register paths relative to the repository.
 */
function statusesOf(run: LoadedTestRun, reference: TestReference): string[] {
  const pattern = titlePattern(reference.title);
  return [...run.results.entries()]
    .filter(([file]) => file === reference.file || file.endsWith(`/${reference.file}`))
    .flatMap(([, titles]) => {
      const exact = titles.get(reference.title);
      if (exact) return exact;
      return [...titles.entries()]
        .filter(([title]) => pattern.test(title))
        .flatMap(([, statuses]) => statuses);
    });
}

function resultOf(statuses: string[]): TestResult {
  if (statuses.length === 0) return 'not run';
  if (statuses.some((status) => status === 'failed')) return 'failed';
  if (statuses.every((status) => status === 'passed')) return 'passed';
  return 'skipped';
}

/** Each register row with the result of every test it cites; `proved` needs all of them passed. */
export function proofResults(rows: readonly RegisterRow[], run: LoadedTestRun): ProofEvidence[] {
  return rows.map((row) => {
    const tests = row.tests.map((reference) => ({
      ...reference,
      result: resultOf(statusesOf(run, reference)),
    }));
    const results = new Set(tests.map((test) => test.result));
    const result =
      tests.length === 0
        ? 'not run'
        : results.has('failed')
          ? 'failed'
          : results.has('not run')
            ? 'not run'
            : results.has('skipped')
              ? 'skipped'
              : 'proved';
    return { id: row.id, result, tests };
  });
}
