import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll } from 'vitest';
import { DEVELOPMENT_POLICY } from '../../src/cli/local.ts';
import { startRuntime, type Runtime } from '../../src/cli/runtime.ts';
import { seedPolicy } from '../../src/db/policy.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { freshDatabase, type LoginRole, type TestDatabase } from './database.ts';
import { startRailServer, type RailServer } from './rail-server.ts';
import { CLI_BIN } from './paths.ts';
import { waitUntil } from './processes.ts';

export interface RelayerDatabase {
  db: TestDatabase;
  /** LOGIN role that is a member of symphony_executor. */
  login: LoginRole;
  /** Settings for a relayer against this database; fast polling and repair unless overridden. */
  env(overrides?: Record<string, string>): NodeJS.ProcessEnv;
}

/** A migrated database with an ACTIVE policy and an executor login: what `run` needs. */
export async function relayerDatabase(): Promise<RelayerDatabase> {
  const db = await freshDatabase();
  await seedPolicy(db.owner, { file: DEVELOPMENT_POLICY });
  const login = await db.createLoginRole(['symphony_executor']);
  return {
    db,
    login,
    env: (overrides = {}) => ({
      DATABASE_URL: login.url,
      SYMPHONY_HTTP_PORT: '0',
      SYMPHONY_POLL_INTERVAL_MS: '1000',
      SYMPHONY_REPAIR_INTERVAL_MS: '1000',
      SYMPHONY_QUEUE_STATS_INTERVAL_MS: '1000',
      SYMPHONY_RETRY_BASE_MS: '1000',
      SYMPHONY_RETRY_MAX_MS: '2000',
      SYMPHONY_RETRY_JITTER: '0',
      LOG_LEVEL: 'silent',
      ...overrides,
    }),
  };
}

export function httpRails(url: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ bank: { type: 'http', url, ...extra } });
}

/** The relayer in this process, for tests that need its metrics or readiness. */
export async function startRelayer(env: NodeJS.ProcessEnv): Promise<Runtime> {
  return startRuntime(env, createLogger({ level: 'silent', name: 'test-relayer' }));
}

export interface RelayerOnHttpRail {
  target: RelayerDatabase;
  /** Scripted loopback server behind the http rail named `bank`. */
  rail: RailServer;
  relayer: Runtime;
  /** Stops the relayer, then the rail; usable as a beforeAll teardown. */
  stop(): Promise<void>;
}

/**
 * A relayer database, a scripted rail configured as the http rail `bank`, and an in-process
 * relayer on both with `settings` on top of the fast test defaults. `prepare` runs before
 * the relayer starts, for what it must see from its first poll (database settings, rail
 * answers). Whatever was started is stopped again when a later step fails.
 */
export async function startRelayerOnHttpRail(
  settings: Record<string, string> = {},
  prepare?: (parts: { target: RelayerDatabase; rail: RailServer }) => Promise<void> | void,
): Promise<RelayerOnHttpRail> {
  const target = await relayerDatabase();
  const rail = await startRailServer();
  try {
    await prepare?.({ target, rail });
    const relayer = await startRelayer(
      target.env({ SYMPHONY_RAILS: httpRails(rail.url), ...settings }),
    );
    return {
      target,
      rail,
      relayer,
      stop: async () => {
        await relayer.stop();
        await rail.close();
      },
    };
  } catch (error) {
    await rail.close();
    throw error;
  }
}

export interface RelayerProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Relayer processes of this test file still running. Killed when the file's tests are over
 * (after the file's own hooks): a test that timed out never reached its own kill, and its
 * relayer went on polling a dropped database for as long as the machine ran (two such
 * orphans were left by one `npm run verify:proofs`, whose killed mutants time out by design).
 */
const running = new Set<ChildProcess>();
afterAll(() => {
  for (const child of running) child.kill('SIGKILL');
});

/** `symphony-relay run` as a real child process with exactly the given environment. */
export function spawnRelayer(
  env: NodeJS.ProcessEnv,
  args: string[] = ['run'],
  options: { cwd?: string } = {},
): RelayerProcess {
  const child = spawn(process.execPath, [CLI_BIN, ...args], {
    cwd: options.cwd,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => output, exited };
}

/** Waits until a relayer process has logged a line containing `text`. */
export async function waitForLog(relayer: RelayerProcess, text: string): Promise<void> {
  await waitUntil(async () => (relayer.output().includes(text) ? true : undefined), {
    description: `relayer log "${text}" (output so far: ${relayer.output().slice(-2000)})`,
    attempts: 240,
  });
}

export interface OutboxTotals {
  pending: number;
  terminal: number;
}

export async function outboxTotals(db: TestDatabase): Promise<OutboxTotals> {
  const { rows } = await db.owner.query<{ pending: number; terminal: number }>(
    `SELECT (SELECT count(*)::int FROM payment_outbox_pending) AS pending,
            (SELECT count(*)::int FROM payment_outbox_attempts WHERE state IN ('DISPATCHED', 'FAILED')) AS terminal`,
  );
  return rows[0] ?? { pending: -1, terminal: -1 };
}

/** Waits until `count` items have a terminal attempt and nothing is pending. */
export async function waitForAllTerminal(
  db: TestDatabase,
  count: number,
  attempts = 480,
): Promise<void> {
  await waitUntil(
    async () => {
      const totals = await outboxTotals(db);
      return totals.pending === 0 && totals.terminal >= count ? totals : undefined;
    },
    { description: `${count} terminal attempts and an empty queue`, attempts },
  );
}

export async function attemptsOf(db: TestDatabase, outboxId: string) {
  const { rows } = await db.owner.query<{
    attempt_no: number;
    state: string;
    error_code: string | null;
    rail_reference: string | null;
    rail_code: string | null;
    claimed_at: Date;
  }>(
    `SELECT attempt_no, state::text, error_code, rail_reference, rail_code, claimed_at
       FROM payment_outbox_attempts WHERE outbox_id = $1 ORDER BY attempt_no`,
    [outboxId],
  );
  return rows;
}

export { sleep };
