import { appendFile, cp, mkdir, readFile, rm, symlink } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { MIGRATIONS_DIR } from '../../src/db/migrate/files.ts';
import { schemaFingerprint, SNAPSHOT_FILE } from '../../src/db/migrate/snapshot.ts';
import { seedPolicy } from '../../src/db/policy.ts';
import { collectEvidence, type EvidenceReport } from '../../src/evidence/evidence.ts';
import { stampFileFor } from '../../src/evidence/test-report.ts';
import { runCli, scratchDirectory } from '../support/cli.ts';
import { freshDatabase } from '../support/database.ts';
import { TESTED_COMMIT, writeTestReport } from '../support/evidence-fixtures.ts';
import { REPO_ROOT } from '../support/paths.ts';
import { runBinary } from '../support/processes.ts';
import { README, shellBlocks } from '../support/readme-blocks.ts';
import { rolledBackOn } from '../support/transactions.ts';
import { withCredentials } from '../support/urls.ts';

const clean = await freshDatabase();
const auditor = await clean.createLoginRole(['symphony_auditor'], { inherit: false });
const scratch = await scratchDirectory('evidence');
const passingReport = await writeTestReport(await subdirectory('passing'));
const DEVELOPMENT_POLICY = path.join(REPO_ROOT, 'policy/development.json');
await seedPolicy(clean.owner, { file: DEVELOPMENT_POLICY });

async function subdirectory(name: string): Promise<string> {
  const dir = path.join(scratch.path, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** `symphony-relay evidence` as the auditor login of `url`, this code being TESTED_COMMIT. */
function evidence(url: string, args: string[] = []) {
  return runCli(['evidence', '--test-report', passingReport, ...args], {
    DATABASE_URL: url,
    GIT_COMMIT: TESTED_COMMIT,
  });
}

function driftLines(stdout: string): string[] {
  return stdout.split('\n').filter((line) => line.startsWith('DRIFT '));
}

describe('symphony-relay evidence (as symphony_auditor)', () => {
  it('INV-EVIDENCE-CLEAN: a freshly migrated database with every proof passed exits 0 and its live fingerprint is the snapshot’s', async () => {
    const result = await evidence(auditor.url, ['--json', '--policy-file', DEVELOPMENT_POLICY]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as EvidenceReport;
    const committed = schemaFingerprint(await readFile(SNAPSHOT_FILE, 'utf8'));
    expect(report.drift).toEqual([]);
    expect(report.session).toMatchObject({ login: auditor.name, actingAs: 'symphony_auditor' });
    expect(report.code).toMatchObject({ commit: TESTED_COMMIT, source: 'GIT_COMMIT' });
    expect(report.code.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(report.schema).toMatchObject({
      liveFingerprint: committed,
      committedFingerprint: committed,
      equal: true,
      differences: [],
    });
    expect(report.migrations.length).toBeGreaterThanOrEqual(24);
    expect(report.migrations.every((row) => row.state === 'applied')).toBe(true);
    expect(report.migrations[0]).toMatchObject({ version: '0001', fileName: '0001_init.sql' });
    expect(report.migrations[0]?.ledgerChecksum).toBe(report.migrations[0]?.fileChecksum);
    expect(report.policy.active?.checksum).toMatch(/^[0-9a-f]{64}$/);
    expect(report.policy.active).toEqual({
      version: report.policy.expected?.version,
      checksum: report.policy.expected?.checksum,
    });
    expect(report.privileges).toEqual([
      { check: expect.stringContaining('declared privilege matrix'), undeclared: [], missing: [] },
      { check: expect.stringContaining('runtime role memberships'), undeclared: [], missing: [] },
    ]);
    expect(report.proofs.run).toMatchObject({ commit: TESTED_COMMIT, failed: 0, success: true });
    expect(report.proofs.register.length).toBeGreaterThan(100);
    expect(report.proofs.register.every((row) => row.result === 'proved')).toBe(true);
    expect(report.proofs.register.map((row) => row.id)).toContain('INV-EVIDENCE-CLEAN');
  });

  it('INV-EVIDENCE-CLEAN: the text form names every section and says there is no drift', async () => {
    const result = await evidence(auditor.url);
    expect(result.code).toBe(0);
    const committed = schemaFingerprint(await readFile(SNAPSHOT_FILE, 'utf8'));
    expect(result.stdout).toContain(`read as ${auditor.name} (acting as symphony_auditor)`);
    expect(result.stdout).toContain(`commit ${TESTED_COMMIT} (GIT_COMMIT)`);
    expect(result.stdout).toContain(`live sha256:${committed}`);
    expect(result.stdout).toMatch(/0001_init\.sql +applied +sha256:[0-9a-f]{64}/);
    expect(result.stdout).toMatch(/policy +ACTIVE \S+ sha256:[0-9a-f]{64}/);
    expect(result.stdout).toMatch(/INV-SCHEMA-SNAPSHOT +proved/);
    expect(result.stdout.trimEnd().split('\n').at(-1)).toBe('drift: none');
  });

  it('INV-EVIDENCE-SCHEMA-DRIFT: a function a superuser added to schema public exits 1, naming it', async () => {
    const db = await freshDatabase();
    const login = await db.createLoginRole(['symphony_auditor'], { inherit: false });
    await db.owner.query(`CREATE FUNCTION public.x() RETURNS integer LANGUAGE sql AS 'SELECT 1'`);
    const result = await evidence(login.url);
    expect(result.code).toBe(1);
    const drift = driftLines(result.stdout);
    expect(drift).toContainEqual(
      expect.stringMatching(
        /^DRIFT schema: functions: in the database, not in schema\/snapshot\.txt: x\(\) returns integer /,
      ),
    );
    expect(drift.every((line) => /\bx\(\)/.test(line))).toBe(true);
    expect(result.stdout).toContain('(schema/snapshot.txt): DIFFERENT');
  });

  it('INV-EVIDENCE-SCHEMA-DRIFT: a grant added or revoked on a table or function exits 1, naming the grant', async () => {
    const db = await freshDatabase();
    const login = await db.createLoginRole(['symphony_auditor'], { inherit: false });
    await db.owner.query(
      'GRANT SELECT ON public.participant_outbox_sequences TO symphony_readonly',
    );
    await db.owner.query(
      'REVOKE EXECUTE ON FUNCTION public.outbox_queue_stats() FROM symphony_executor',
    );
    const result = await evidence(login.url);
    expect(result.code).toBe(1);
    expect(driftLines(result.stdout)).toEqual([
      'DRIFT schema: table privileges: in the database, not in schema/snapshot.txt: participant_outbox_sequences symphony_readonly SELECT',
      'DRIFT schema: function privileges: in schema/snapshot.txt, not in the database: outbox_queue_stats() symphony_executor EXECUTE',
      'DRIFT privileges: undeclared: table public.participant_outbox_sequences: symphony_readonly SELECT',
      'DRIFT privileges: missing: function public.outbox_queue_stats(): symphony_executor EXECUTE',
    ]);
  });

  it('INV-EVIDENCE-MIGRATION-EDITED: a migration file edited after it was applied is named, with both checksums', async () => {
    const migrations = path.join(await subdirectory('migrations'), 'migrations');
    await cp(MIGRATIONS_DIR, migrations, { recursive: true });
    await appendFile(path.join(migrations, '0004_privileges.sql'), '\n-- edited afterwards\n');
    const report = await collectEvidence(clean.owner, {
      migrationsDir: migrations,
      testReportFile: passingReport,
      env: { GIT_COMMIT: TESTED_COMMIT },
    });
    expect(report.drift).toEqual([
      {
        section: 'migrations',
        message: expect.stringMatching(
          /^0004_privileges\.sql was edited after it was applied \(applied sha256 [0-9a-f]{12}…, file sha256 [0-9a-f]{12}…\)$/,
        ),
      },
    ]);
    expect(report.migrations.find((row) => row.version === '0004')?.state).toBe('edited');
  });

  it('INV-EVIDENCE-MIGRATION-EDITED: a migration not applied, and one applied that has no file, are drift', async () => {
    const migrations = path.join(await subdirectory('migrations-extra'), 'migrations');
    await cp(MIGRATIONS_DIR, migrations, { recursive: true });
    await appendFile(path.join(migrations, '9998_not_yet.sql'), 'SELECT 1;\n');
    await rolledBackOn(clean.owner, async (client) => {
      await client.query(
        `INSERT INTO public.schema_migrations (version, description, checksum_sha256)
         VALUES ('9999', 'from_elsewhere', repeat('a', 64))`,
      );
      const report = await collectEvidence(client, {
        migrationsDir: migrations,
        testReportFile: passingReport,
        env: { GIT_COMMIT: TESTED_COMMIT },
      });
      expect(report.drift.map((item) => item.message)).toEqual([
        '9998_not_yet.sql is not applied to this database',
        'version 9999 is applied to this database but this code has no such migration file',
      ]);
    });
  });

  it('INV-EVIDENCE-PRIVILEGES: a runtime role made a member of another role is named', async () => {
    // Roles are cluster-global and other test files run meanwhile: the grant stays uncommitted.
    await rolledBackOn(clean.owner, async (client) => {
      await client.query('GRANT pg_read_all_data TO symphony_auditor');
      const report = await collectEvidence(client, {
        testReportFile: passingReport,
        env: { GIT_COMMIT: TESTED_COMMIT },
      });
      expect(report.drift).toEqual([
        {
          section: 'privileges',
          message: 'undeclared: symphony_auditor is a member of pg_read_all_data',
        },
      ]);
    });
  });

  it('INV-EVIDENCE-PROOFS: a failed proof and a proof that never ran exit 1, naming the invariant; a missing report does with --require-proofs', async () => {
    const failedTitle =
      'INV-SCHEMA-SNAPSHOT: the migrations reproduce the committed schema/snapshot.txt exactly';
    const absentTitle = 'INV-IDS-UUIDV7: id defaults call uuidv7() and no public.uuidv7 shadows it';
    const report = await writeTestReport(await subdirectory('failing'), {
      failed: [failedTitle],
      absent: [absentTitle],
    });
    const failing = await runCli(['evidence', '--test-report', report], {
      DATABASE_URL: auditor.url,
      GIT_COMMIT: TESTED_COMMIT,
    });
    expect(failing.code).toBe(1);
    expect(driftLines(failing.stdout)).toEqual([
      `DRIFT proofs: INV-IDS-UUIDV7 is not proved by the last test run: test/db/environment.test.ts › ${absentTitle}: not run`,
      `DRIFT proofs: INV-SCHEMA-SNAPSHOT is not proved by the last test run: test/db/migrate/snapshot.test.ts › ${failedTitle}: failed`,
    ]);

    const missing = path.join(scratch.path, 'no-such-report.json');
    const unrecorded = await runCli(['evidence', '--test-report', missing], {
      DATABASE_URL: auditor.url,
      GIT_COMMIT: TESTED_COMMIT,
    });
    expect(unrecorded.code).toBe(0);
    expect(unrecorded.stdout).toContain(
      `no test report at ${missing}: run \`npm test\` (it writes one), or pass --test-report <file> (the proofs are not part of this evidence; --require-proofs makes this drift)`,
    );
    expect(driftLines(unrecorded.stdout)).toEqual([]);

    const required = await runCli(['evidence', '--test-report', missing, '--require-proofs'], {
      DATABASE_URL: auditor.url,
      GIT_COMMIT: TESTED_COMMIT,
    });
    expect(required.code).toBe(1);
    expect(driftLines(required.stdout)).toEqual([
      `DRIFT proofs: no test report at ${missing}: run \`npm test\` (it writes one), or pass --test-report <file>`,
    ]);
  });

  it('INV-EVIDENCE-PROOFS: a report of another commit, or of a run with uncommitted changes, is drift', async () => {
    const dirty = await writeTestReport(await subdirectory('dirty'), { dirty: true });
    const result = await runCli(['evidence', '--test-report', dirty], {
      DATABASE_URL: auditor.url,
      GIT_COMMIT: '0123456789abcdef0123456789abcdef01234567',
    });
    expect(result.code).toBe(1);
    expect(driftLines(result.stdout)).toEqual([
      'DRIFT proofs: the test report is of commit e1de7ce00000, this code is 0123456789ab: run `npm test` on this commit',
      'DRIFT proofs: the test run had uncommitted changes to commit e1de7ce00000: its results are not those of a commit',
    ]);
  });

  it('INV-EVIDENCE-PROOFS: a report without its run stamp cannot be tied to a commit and is drift', async () => {
    const report = await writeTestReport(await subdirectory('unstamped'));
    await rm(stampFileFor(report));
    const evidence = await collectEvidence(clean.owner, {
      testReportFile: report,
      env: { GIT_COMMIT: TESTED_COMMIT },
    });
    expect(evidence.proofs.run).toMatchObject({ stampFile: null, commit: null });
    expect(evidence.drift).toEqual([
      {
        section: 'proofs',
        message: `the test report has no run stamp of this run (${stampFileFor(report)}), so its commit is unknown: run \`npm test\`, which writes both`,
      },
    ]);
  });

  it('INV-EVIDENCE-POLICY: an ACTIVE policy other than the reviewed file is drift', async () => {
    const other = await scratch.write(
      'other-policy.json',
      JSON.stringify({ version: 'other-2026', environment: 'production' }),
    );
    const result = await evidence(auditor.url, ['--policy-file', other]);
    expect(result.code).toBe(1);
    expect(driftLines(result.stdout)).toEqual([
      expect.stringMatching(
        /^DRIFT policy: ACTIVE policy \S+ \(sha256 [0-9a-f]{12}…\) is not .*other-policy\.json \(other-2026, sha256 [0-9a-f]{12}…\)$/,
      ),
    ]);
  });

  it('refuses a login that does not act as symphony_auditor, in one line', async () => {
    const reader = await clean.createLoginRole(['symphony_readonly'], { inherit: false });
    const result = await evidence(reader.url);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(
        /^symphony-relay: evidence: login role "login_\w+" does not act as symphony_auditor .*roles create-login --name <login> --acts-as symphony_auditor/,
      ),
    ]);
  });

  // The block's prose names these variables; `symphony-relay` is on PATH as an installed
  // package puts it, and the block runs in the checkout (the register is read from it).
  it('the README’s evidence block runs as written: it creates the auditor login and exits 0 on a clean database', async () => {
    const block = shellBlocks(README).find(
      (candidate) =>
        candidate.marker === 'run' && candidate.script.includes('symphony-relay evidence'),
    );
    expect(block, 'the README evidence block is marked readme-test: run').toBeDefined();
    const binDir = await subdirectory('bin');
    await symlink(
      path.join(REPO_ROOT, 'bin/symphony-relay.js'),
      path.join(binDir, 'symphony-relay'),
    );
    const password = 'readme-auditor-secret-4';
    onTestFinished(async () => {
      const made = await clean.owner.query(
        "SELECT 1 FROM pg_roles WHERE rolname = 'auditor_login'",
      );
      if (made.rowCount) {
        await clean.owner.query('DROP OWNED BY auditor_login');
        await clean.owner.query('DROP ROLE auditor_login');
      }
    });
    const result = await runBinary(
      { binary: 'sh', installHint: 'a POSIX shell (Debian: dash)' },
      ['-ec', block?.script ?? 'false'],
      {
        cwd: REPO_ROOT,
        env: {
          PATH: `${binDir}:${path.dirname(process.execPath)}:${process.env.PATH ?? ''}`,
          HOME: process.env.HOME,
          DATABASE_URL: clean.ownerUrl,
          AUDITOR_PASSWORD: password,
          AUDITOR_DATABASE_URL: withCredentials(clean.ownerUrl, 'auditor_login', password),
          TEST_REPORT: passingReport,
          POLICY_FILE: DEVELOPMENT_POLICY,
          GIT_COMMIT: TESTED_COMMIT,
        },
        timeoutMs: 120_000,
      },
    );
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
    expect(result.stdout).toContain(
      'created login role auditor_login; it can act only as symphony_auditor',
    );
    expect(result.stdout).toContain('read as auditor_login (acting as symphony_auditor)');
    expect(result.stdout.trimEnd().split('\n').at(-1)).toBe('drift: none');
    expect(`${result.stdout}${result.stderr}`).not.toContain(password);
  });
});
