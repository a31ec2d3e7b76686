import type { Command } from 'commander';
import { migrate, migrationStatus } from '../db/migrate/runner.ts';
import { requireDatabaseUrl } from './errors.ts';

export function registerMigrateCommand(program: Command): void {
  program
    .command('migrate')
    .description(
      'apply pending schema migrations (as the schema owner); safe to run from several places at once',
    )
    .option('--database-url <url>', 'owner connection string (default: $DATABASE_URL)')
    .option('--status', 'list applied and pending migrations with their checksums; apply nothing')
    .action(async (options: { databaseUrl?: string; status?: boolean }) => {
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
        onApplied: (file, millis) => console.log(`applied  ${file.fileName}  (${millis} ms)`),
      });
      console.log(
        result.applied.length === 0
          ? `schema is up to date (${result.alreadyApplied.length} migrations applied, nothing to do)`
          : `applied ${result.applied.length} migration(s); ${result.alreadyApplied.length} were already applied`,
      );
    });
}
