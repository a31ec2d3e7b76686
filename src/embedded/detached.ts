import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { EmbeddedOptions, EmbeddedServer } from './postgres.ts';

const BIN = fileURLToPath(new URL('../../bin/symphony-relay.js', import.meta.url));
export const SERVE_COMMAND = 'serve-embedded-postgres';

type Ready =
  | { ready: true; adminUrl: string; port: number; binariesDir: string }
  | { ready: false; error: string };

/**
 * Runs the embedded PostgreSQL from a helper process in its own process group. A terminal's
 * Ctrl-C signals the whole foreground group, and postgres treats SIGINT as "fast shutdown":
 * it would close every connection while the relayer is still finishing its in-flight work.
 * Detached, the database only stops when we ask, after the relayer has stopped — or when
 * this process dies, which the helper notices as the IPC channel closing.
 */
export async function startDetachedEmbeddedPostgres(
  options: Omit<EmbeddedOptions, 'onLog'>,
): Promise<EmbeddedServer> {
  const child = spawn(process.execPath, [BIN, SERVE_COMMAND, JSON.stringify(options)], {
    detached: true,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = await new Promise<Ready>((resolve) => {
    child.once('message', (message) => resolve(message as Ready));
    child.once('error', (error) =>
      resolve({
        ready: false,
        error: `the embedded PostgreSQL helper did not start: ${error.message}`,
      }),
    );
    child.once('exit', (code) =>
      resolve({ ready: false, error: `the embedded PostgreSQL helper exited with code ${code}` }),
    );
  });
  if (!ready.ready) throw new Error(ready.error);
  return {
    adminUrl: ready.adminUrl,
    port: ready.port,
    binariesDir: ready.binariesDir,
    async stop() {
      if (child.connected) child.send('stop');
      await exited;
    },
  };
}
