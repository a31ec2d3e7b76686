import type { Command } from 'commander';
import { formatConfigHelp } from '../config.ts';
import { startRuntime, stopOnSignals } from './runtime.ts';

export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .description('run the relayer against $DATABASE_URL (configured by environment variables)')
    .addHelpText('after', `\nEnvironment variables:\n${formatConfigHelp()}`)
    .action(async () => {
      const runtime = await startRuntime();
      stopOnSignals(async () => {
        await runtime.stop();
      }, runtime.logger);
      // Resolves never: the process ends through stopOnSignals.
      await new Promise<never>(() => undefined);
    });
}
