import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { isRoot } from '../../src/embedded/binaries.ts';
import { freePort, startBinary, waitUntil, type RunningProcess } from './processes.ts';
import { withCredentials } from './urls.ts';

export type PoolMode = 'session' | 'transaction';

export interface PgBouncer {
  /** A connection string through PgBouncer for one of the users it was given. */
  url(user: string, password: string): string;
  process: RunningProcess;
  stop(): Promise<void>;
}

const PGBOUNCER = {
  binary: existsSync('/usr/sbin/pgbouncer') ? '/usr/sbin/pgbouncer' : 'pgbouncer',
  installHint:
    'install the Debian package `pgbouncer` (apt-get install -y pgbouncer; .ci/run does)',
};

/**
 * A real PgBouncer (the Debian package) in front of one database of the test server, with
 * nothing relaxed for us: no ignore_startup_parameters, so a client that sends `options` or
 * `statement_timeout` is refused exactly as in production.
 */
export async function startPgBouncer(options: {
  mode: PoolMode;
  /** Any URL of the target database (its host, port and name are used). */
  databaseUrl: string;
  users: { name: string; password: string }[];
}): Promise<PgBouncer> {
  const target = new URL(options.databaseUrl);
  const database = target.pathname.slice(1);
  const port = await freePort();
  // PgBouncer refuses to run as root; as root it drops to the postgres OS user, who must
  // be able to read these files.
  const dir = await mkdtemp(path.join(os.tmpdir(), 'symphony-pgbouncer-'));
  await chmod(dir, 0o755);
  const quote = (value: string) => `"${value.replace(/"/g, '""')}"`;
  await writeFile(
    path.join(dir, 'userlist.txt'),
    options.users.map((user) => `${quote(user.name)} ${quote(user.password)}\n`).join(''),
    { mode: 0o644 },
  );
  await writeFile(
    path.join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `${database} = host=${target.hostname} port=${target.port} dbname=${database}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = scram-sha-256',
      `auth_file = ${path.join(dir, 'userlist.txt')}`,
      `pool_mode = ${options.mode}`,
      'max_client_conn = 200',
      'default_pool_size = 10',
      'server_reset_query = DISCARD ALL',
      '',
    ].join('\n'),
    { mode: 0o644 },
  );
  const process = await startBinary(PGBOUNCER, [
    ...(isRoot() ? ['-u', 'postgres'] : []),
    path.join(dir, 'pgbouncer.ini'),
  ]);
  const bouncer: PgBouncer = {
    url: (user, password) => {
      const url = new URL(withCredentials(options.databaseUrl, user, password));
      url.hostname = '127.0.0.1';
      url.port = String(port);
      return url.toString();
    },
    process,
    async stop() {
      await process.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  const first = options.users[0];
  if (first) {
    await waitUntil(
      async () => {
        const client = new pg.Client({ connectionString: bouncer.url(first.name, first.password) });
        client.on('error', () => undefined);
        await client.connect();
        await client.end();
        return true;
      },
      { description: `PgBouncer (${options.mode}) to accept connections: ${process.output()}` },
    ).catch(async (error: unknown) => {
      await bouncer.stop();
      throw error;
    });
  }
  return bouncer;
}
