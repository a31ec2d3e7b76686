import { Command } from 'commander';
import { registerControlCommands } from './controls.ts';
import { registerEnqueueCommand } from './enqueue.ts';
import { CliError } from './errors.ts';
import { registerEvidenceCommand } from './evidence.ts';
import { registerLimitsCommand } from './limits.ts';
import { registerLocalCommand } from './local.ts';
import { registerMigrateCommand } from './migrate.ts';
import { registerMockRailCommand } from './mock-rail.ts';
import { registerPolicyCommand } from './policy.ts';
import { registerRailCommand } from './rail.ts';
import { registerRolesCommand } from './roles.ts';
import { registerRunCommand } from './run.ts';
import { registerSchemaCommand } from './schema.ts';
import { registerServeEmbeddedPostgresCommand } from './serve-embedded-postgres.ts';
import { registerStatusCommand } from './status.ts';

const program = new Command()
  .name('symphony-relay')
  .description('Outbox relayer for payment instructions: PostgreSQL 18 outbox → payment rails')
  .showHelpAfterError()
  .configureOutput({ outputError: (text, write) => write(text) });

registerRunCommand(program);
registerLocalCommand(program);
registerMigrateCommand(program);
registerRolesCommand(program);
registerSchemaCommand(program);
registerServeEmbeddedPostgresCommand(program);
registerEnqueueCommand(program);
registerStatusCommand(program);
registerEvidenceCommand(program);
registerPolicyCommand(program);
registerLimitsCommand(program);
registerControlCommands(program);
registerRailCommand(program);
registerMockRailCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  const exitCode = error instanceof CliError ? error.exitCode : 1;
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`symphony-relay: ${message}\n`);
  // Exit now: a failed start may leave a timer or a reconnecting socket behind, and the
  // operator (or Kubernetes) must see the failure within seconds, not after it winds down.
  process.exit(exitCode);
}
