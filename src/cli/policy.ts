import type { Command } from 'commander';
import { PolicySeedError, readPolicyFile, seedPolicy } from '../db/policy.ts';
import type { RuntimeRole } from '../db/roles.ts';
import { withDatabaseSession } from './database-session.ts';
import { CliError, requireDatabaseUrl } from './errors.ts';

const CONTROL_ROLE = 'symphony_control';

export function registerPolicyCommand(program: Command): void {
  const policy = program
    .command('policy')
    .description('platform policy governance (policy_versions)');
  policy
    .command('seed')
    .summary('seed the ACTIVE policy from a JSON file (idempotent, fails closed)')
    .description(
      'insert the policy in --file as the ACTIVE policy of a database that has none; prints its version ' +
        'and the sha256 of its canonical JSON. Re-running with the same file is a no-op; any other ' +
        'ACTIVE policy, changed content under the same version, or a database error fails closed ' +
        'without changing anything',
    )
    .requiredOption(
      '--file <policy.json>',
      'policy document: a JSON object with a "version" string',
    )
    .option(
      '--acts-as <role>',
      `SET ROLE first, for a login that is a (NOINHERIT) member of ${CONTROL_ROLE}`,
    )
    .option(
      '--database-url <url>',
      `schema owner, or a login allowed to act as ${CONTROL_ROLE} (default: $DATABASE_URL)`,
    )
    .action(async (options: { file: string; actsAs?: string; databaseUrl?: string }) => {
      const url = requireDatabaseUrl(options.databaseUrl, 'policy seed');
      if (options.actsAs !== undefined && options.actsAs !== CONTROL_ROLE) {
        throw new CliError(
          `policy seed: --acts-as must be ${CONTROL_ROLE} (the only runtime role allowed to write policies)`,
          2,
        );
      }
      const seed = async () => {
        // A broken file is reported without touching (or needing) the database.
        await readPolicyFile(options.file);
        return withDatabaseSession(
          {
            connectionString: url,
            command: 'policy seed',
            actAs: options.actsAs as RuntimeRole | undefined,
          },
          (db) => seedPolicy(db, { file: options.file }),
        );
      };
      const result = await seed().catch((error: unknown) => {
        // seedPolicy's own messages already say what was wrong and that nothing changed.
        if (error instanceof PolicySeedError) throw new CliError(`policy seed: ${error.message}`);
        throw error;
      });
      console.log(
        result.outcome === 'seeded'
          ? `seeded policy ${result.version} as ACTIVE (sha256 ${result.checksum})`
          : `policy ${result.version} is already seeded and ACTIVE (sha256 ${result.checksum}); nothing changed`,
      );
    });
}
