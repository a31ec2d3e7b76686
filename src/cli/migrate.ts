import type { Command } from 'commander';
import { DEFAULT_MIGRATION_LOCK_WAIT_MS, migrate, migrationStatus } from '../db/migrate/runner.ts';
import { CliError, requireDatabaseUrl } from './errors.ts';

const MAX_LOCK_WAIT_SECONDS = 86_400;

function lockWaitMs(value: string): number {
  const seconds = Number(value);
  if (!/^\d+$/.test(value) || seconds < 1 || seconds > MAX_LOCK_WAIT_SECONDS) {
    throw new CliError(
      `--lock-wait "${value}" is invalid: expected whole seconds from 1 to ${MAX_LOCK_WAIT_SECONDS}`,
      2,
    );
  }
  return seconds * 1000;
}

export function registerMigrateCommand(program: Command): void {
  program
    .command('migrate')
    .description(
      'apply pending schema migrations (as the schema owner); safe to run from several places at once',
    )
    .option('--database-url <url>', 'owner connection string (default: $DATABASE_URL)')
    .option('--status', 'list applied and pending migrations with their checksums; apply nothing')
    .option(
      '--lock-wait <seconds>',
      'longest wait for the migration lock held by another runner (or any session); then fail naming the holder',
      String(DEFAULT_MIGRATION_LOCK_WAIT_MS / 1000),
    )
    .action(async (options: { databaseUrl?: string; status?: boolean; lockWait: string }) => {
      const waitMs = lockWaitMs(options.lockWait);
      const url = requireDatabaseUrl(options.databaseUrl, 'migrate');
      if (options.status) {
        const rows = await migrationStatus(url);
        for (const row of rows) {
          const when = row.appliedAt ? row.appliedAt.toISOString() : '-';
          console.log(
            `${row.state.padEnd(7)}  ${row.fileName.padEnd(52)}  ${row.checksum}  ${when}`,
          );
        }
        const pending = rows.filter((row) => row.state === 'pending').length;
        console.log(`${rows.length - pending} applied, ${pending} pending`);
        return;
      }
      const result = await migrate(url, {
        lockWaitMs: waitMs,
        onApplied: (file, millis) => console.log(`applied  ${file.fileName}  (${millis} ms)`),
      });
      console.log(
        result.applied.length === 0
          ? `schema is up to date (${result.alreadyApplied.length} migrations applied, nothing to do)`
          : `applied ${result.applied.length} migration(s); ${result.alreadyApplied.length} were already applied`,
      );
    });
}
