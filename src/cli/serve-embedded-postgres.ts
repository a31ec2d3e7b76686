import type { Command } from 'commander';
import { SERVE_COMMAND } from '../embedded/detached.ts';
import { startEmbeddedPostgres, type EmbeddedOptions } from '../embedded/postgres.ts';

/** Internal: the helper process behind startDetachedEmbeddedPostgres (see there for why). */
export function registerServeEmbeddedPostgresCommand(program: Command): void {
  program
    .command(SERVE_COMMAND, { hidden: true })
    .argument('<options>', 'JSON EmbeddedOptions')
    .action(async (json: string) => {
      const send = (message: unknown) => process.send?.(message);
      let server;
      try {
        server = await startEmbeddedPostgres(JSON.parse(json) as EmbeddedOptions);
      } catch (error) {
        send({ ready: false, error: (error as Error).message });
        process.exit(1);
      }
      const stop = async () => {
        await server.stop();
        process.exit(0);
      };
      process.on('message', (message) => {
        if (message === 'stop') void stop();
      });
      process.on('disconnect', () => void stop());
      send({
        ready: true,
        adminUrl: server.adminUrl,
        port: server.port,
        binariesDir: server.binariesDir,
      });
      await new Promise<never>(() => undefined);
    });
}
