import type { Command } from 'commander';
import { collectEvidence } from '../evidence/evidence.ts';
import { renderEvidence } from '../evidence/render.ts';
import { TEST_REPORT_FILE } from '../evidence/test-report.ts';
import { REGISTER_FILE } from '../evidence/register.ts';
import { databaseFailure, withDatabaseSession } from './database-session.ts';
import { requireDatabaseUrl } from './errors.ts';

const ROLE = 'symphony_auditor';

interface EvidenceCliOptions {
  json?: boolean;
  databaseUrl?: string;
  testReport?: string;
  register?: string;
  policyFile?: string;
  requireProofs?: boolean;
}

export function registerEvidenceCommand(program: Command): void {
  program
    .command('evidence')
    .summary('the evidence posture for an auditor; exits 1 on any drift')
    .description(
      `read as ${ROLE}: this code's commit and version, the sha256 of the live schema and whether it ` +
        'equals schema/snapshot.txt, applied migrations with checksums against the files, the ACTIVE ' +
        'policy, the privilege check, and every invariant of the register with its result in the last ' +
        'test run; exits 1 naming each drift, one line each',
    )
    .option('--json', 'print one JSON object instead of the text (for scripts)')
    .option(
      '--database-url <url>',
      `connection string of a login that acts as ${ROLE} (default: $DATABASE_URL)`,
    )
    .option('--test-report <file>', 'Vitest JSON report of the test run', TEST_REPORT_FILE)
    .option('--register <file>', 'the invariant register', REGISTER_FILE)
    .option('--policy-file <file>', 'the reviewed policy file the ACTIVE policy must equal')
    .option(
      '--require-proofs',
      'a missing test report is drift too (without it, the proofs are reported as not recorded)',
    )
    .action(async (options: EvidenceCliOptions) => {
      const url = requireDatabaseUrl(options.databaseUrl, 'evidence');
      const report = await withDatabaseSession(
        { connectionString: url, command: 'evidence', actAs: ROLE },
        (db) =>
          collectEvidence(db, {
            testReportFile: options.testReport,
            registerFile: options.register,
            policyFile: options.policyFile,
            requireProofs: options.requireProofs,
          }),
      ).catch((error: unknown) => {
        throw databaseFailure('evidence', ROLE, error);
      });
      console.log(options.json ? JSON.stringify(report, null, 2) : renderEvidence(report));
      // Drift is a finding, not a failure to run: the report is printed in full either way.
      if (report.drift.length > 0) process.exitCode = 1;
    });
}
