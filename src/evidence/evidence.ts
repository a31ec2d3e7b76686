import { readFile } from 'node:fs/promises';
import { packageVersion, sourceCommit, type SourceCommit } from '../build-info.ts';
import { MIGRATIONS_DIR, readMigrationFiles } from '../db/migrate/files.ts';
import { readLedger } from '../db/migrate/runner.ts';
import { SNAPSHOT_FILE } from '../db/migrate/snapshot.ts';
import { activePolicy, readPolicyFile, type PolicyIdentity } from '../db/policy.ts';
import type { Queryable } from '../db/pool.ts';
import { compareMigrations, type MigrationEvidence } from './migrations.ts';
import { PRIVILEGE_CHECKS, type PrivilegeCheck, type PrivilegeMatrixCheck } from './privileges.ts';
import { parseRegister, REGISTER_FILE } from './register.ts';
import { schemaEvidence, type SchemaEvidence } from './schema.ts';
import {
  loadTestRun,
  MissingTestReport,
  proofResults,
  stampFileFor,
  TEST_REPORT_FILE,
  type ProofEvidence,
  type TestRunSummary,
} from './test-report.ts';

/** One thing that is not as the code and its proofs say it should be; one line for the operator. */
export interface Drift {
  section: 'schema' | 'migrations' | 'policy' | 'privileges' | 'proofs';
  message: string;
}

export interface EvidenceReport {
  generatedAt: string;
  /** Who read the evidence: the login, and the role its session acted as. */
  session: { login: string; actingAs: string; database: string };
  code: SourceCommit & { version: string };
  schema: SchemaEvidence;
  migrations: MigrationEvidence[];
  policy: { active: PolicyIdentity | null; expected: (PolicyIdentity & { file: string }) | null };
  /** One entry per privilege check, each with what it found. */
  privileges: ({ check: string } & PrivilegeMatrixCheck)[];
  proofs: {
    run: TestRunSummary | null;
    problem: string | null;
    /** True when there was no report at all (drift only with `requireProofs`). */
    reportMissing: boolean;
    register: ProofEvidence[];
  };
  drift: Drift[];
}

export interface EvidenceOptions {
  snapshotFile?: string;
  migrationsDir?: string;
  registerFile?: string;
  testReportFile?: string;
  /** The reviewed policy file the ACTIVE policy must be; without it any ACTIVE policy is reported only. */
  policyFile?: string;
  /**
   * A missing test report is drift only when proofs are required: a database checked from a
   * checkout whose suite has not run yet still gets the rest of its evidence and exit 0.
   */
  requireProofs?: boolean;
  /** The privilege checks; by default PRIVILEGE_CHECKS (the declared matrix and memberships). */
  privilegeChecks?: readonly PrivilegeCheck[];
  env?: NodeJS.ProcessEnv;
}

const short = (checksum: string | null) => (checksum ? checksum.slice(0, 12) : '-');

function migrationDrift(rows: MigrationEvidence[]): Drift[] {
  return rows.flatMap((row): Drift[] => {
    const section = 'migrations';
    switch (row.state) {
      case 'applied':
        return [];
      case 'edited':
        return [
          {
            section,
            message: `${row.fileName} was edited after it was applied (applied sha256 ${short(row.ledgerChecksum)}…, file sha256 ${short(row.fileChecksum)}…)`,
          },
        ];
      case 'not applied':
        return [{ section, message: `${row.fileName} is not applied to this database` }];
      case 'no file':
        return [
          {
            section,
            message: `version ${row.version} is applied to this database but this code has no such migration file`,
          },
        ];
    }
  });
}

function schemaDrift(schema: SchemaEvidence): Drift[] {
  return schema.differences.map(({ section, onlyIn, line }) => ({
    section: 'schema' as const,
    message:
      onlyIn === 'database'
        ? `${section}: in the database, not in schema/snapshot.txt: ${line}`
        : `${section}: in schema/snapshot.txt, not in the database: ${line}`,
  }));
}

function policyDrift(policy: EvidenceReport['policy']): Drift[] {
  const { active, expected } = policy;
  if (!expected) return [];
  if (!active) {
    return [
      {
        section: 'policy',
        message: `no ACTIVE policy; expected ${expected.version} from ${expected.file}`,
      },
    ];
  }
  if (active.version === expected.version && active.checksum === expected.checksum) return [];
  return [
    {
      section: 'policy',
      message: `ACTIVE policy ${active.version} (sha256 ${short(active.checksum)}…) is not ${expected.file} (${expected.version}, sha256 ${short(expected.checksum)}…)`,
    },
  ];
}

function proofDrift(
  proofs: EvidenceReport['proofs'],
  code: SourceCommit,
  requireProofs: boolean,
): Drift[] {
  if (proofs.reportMissing && !requireProofs) return [];
  if (proofs.problem) return [{ section: 'proofs', message: proofs.problem }];
  const drift: Drift[] = [];
  const run = proofs.run;
  if (run && !run.stampFile) {
    drift.push({
      section: 'proofs',
      message: `the test report has no run stamp of this run (${stampFileFor(run.reportFile)}), so its commit is unknown: run \`npm test\`, which writes both`,
    });
  } else if (run && !run.commit) {
    drift.push({
      section: 'proofs',
      message:
        'the test run did not know its commit: run `npm test` in a git checkout (or with GIT_COMMIT set)',
    });
  } else if (run && !code.commit) {
    drift.push({
      section: 'proofs',
      message:
        'the commit of this code is unknown, so the test report cannot be tied to it: set GIT_COMMIT or run from a checkout',
    });
  }
  if (run?.commit && code.commit && run.commit !== code.commit) {
    drift.push({
      section: 'proofs',
      message: `the test report is of commit ${run.commit.slice(0, 12)}, this code is ${code.commit.slice(0, 12)}: run \`npm test\` on this commit`,
    });
  }
  if (run?.dirty) {
    drift.push({
      section: 'proofs',
      message: `the test run had uncommitted changes to commit ${run.commit?.slice(0, 12) ?? '?'}: its results are not those of a commit`,
    });
  }
  for (const row of proofs.register) {
    if (row.result === 'proved') continue;
    const tests = row.tests.filter((test) => test.result !== 'passed');
    drift.push({
      section: 'proofs',
      message: `${row.id} is not proved by the last test run: ${tests
        .map((test) => `${test.file} › ${test.title}: ${test.result}`)
        .join('; ')}`,
    });
  }
  return drift;
}

async function readProofs(
  registerFile: string,
  testReportFile: string,
): Promise<EvidenceReport['proofs']> {
  let rows;
  try {
    rows = parseRegister(await readFile(registerFile, 'utf8'));
  } catch (error) {
    const reason =
      (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (error as Error).message;
    return {
      run: null,
      problem: `the invariant register ${registerFile} cannot be read (${reason}): run evidence from a checkout or pass --register <file>`,
      reportMissing: false,
      register: [],
    };
  }
  try {
    const run = await loadTestRun(testReportFile);
    return {
      run: run.summary,
      problem: null,
      reportMissing: false,
      register: proofResults(rows, run),
    };
  } catch (error) {
    return {
      run: null,
      problem: (error as Error).message,
      reportMissing: error instanceof MissingTestReport,
      register: rows.map((row) => ({
        id: row.id,
        result: 'not run',
        tests: row.tests.map((test) => ({ ...test, result: 'not run' })),
      })),
    };
  }
}

/**
 * Collects the evidence posture of the connected database and this code, and every drift
 * between them. Reads only: the catalog, the migration ledger and the ACTIVE policy (what
 * symphony_auditor may read), plus files of this package (migrations, snapshot, register,
 * the last test report).
 */
export async function collectEvidence(
  db: Queryable,
  options: EvidenceOptions = {},
): Promise<EvidenceReport> {
  const env = options.env ?? process.env;
  const { rows } = await db.query<{
    login: string;
    acting_as: string;
    database: string;
    now: Date;
  }>(
    'SELECT session_user AS login, current_user AS acting_as, current_database() AS database, now()',
  );
  const session = rows[0];
  if (!session) throw new Error('the session query returned no row');
  const code = { ...sourceCommit(env), version: packageVersion() };

  const schema = await schemaEvidence(db, options.snapshotFile ?? SNAPSHOT_FILE);
  const files = await readMigrationFiles(options.migrationsDir ?? MIGRATIONS_DIR);
  const migrations = compareMigrations(files, await readLedger(db));

  const expected = options.policyFile
    ? { ...(await readPolicyFile(options.policyFile)), file: options.policyFile }
    : null;
  const policy = { active: await activePolicy(db), expected };

  const privileges: EvidenceReport['privileges'] = [];
  for (const check of options.privilegeChecks ?? PRIVILEGE_CHECKS) {
    privileges.push({ check: check.name, ...(await check.check(db)) });
  }

  const proofs = await readProofs(
    options.registerFile ?? REGISTER_FILE,
    options.testReportFile ?? TEST_REPORT_FILE,
  );

  const drift: Drift[] = [
    ...schemaDrift(schema),
    ...migrationDrift(migrations),
    ...policyDrift(policy),
    ...privileges.flatMap((found) => [
      ...found.undeclared.map((line) => ({
        section: 'privileges' as const,
        message: `undeclared: ${line}`,
      })),
      ...found.missing.map((line) => ({
        section: 'privileges' as const,
        message: `missing: ${line}`,
      })),
    ]),
    ...proofDrift(proofs, code, options.requireProofs ?? false),
  ];
  return {
    generatedAt: session.now.toISOString(),
    session: { login: session.login, actingAs: session.acting_as, database: session.database },
    code,
    schema,
    migrations,
    policy,
    privileges,
    proofs,
    drift,
  };
}
