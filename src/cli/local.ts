import { createHash, randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import pg from 'pg';
import { migrate } from '../db/migrate/runner.ts';
import { seedPolicy } from '../db/policy.ts';
import { ensureLoginRole } from '../db/roles.ts';
import { startDemoProducer } from '../demo/producer.ts';
import { isRoot, serverUser, userCan } from '../embedded/binaries.ts';
import { startDetachedEmbeddedPostgres } from '../embedded/detached.ts';
import { createLogger, LOG_LEVELS } from '../observability/logger.ts';
import { loadConfig } from '../config.ts';
import { CliError } from './errors.ts';
import { startProgressReporter } from './progress.ts';
import { startRuntime, stopOnSignals, type Runtime } from './runtime.ts';

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHECKOUT_DATA_DIR = `${PROJECT_ROOT}.data/postgres`;

/**
 * `.data/postgres` in the checkout, unless we are root and the `postgres` OS user (which the
 * server must run as) cannot enter the checkout, as in root's home or a `mktemp -d`
 * directory: then a directory of this checkout's own below the system temporary directory.
 */
export function defaultLocalDataDir(): string {
  if (!isRoot() || userCan(serverUser(), '-x', PROJECT_ROOT)) return CHECKOUT_DATA_DIR;
  const key = createHash('sha256').update(PROJECT_ROOT).digest('hex').slice(0, 12);
  return path.join(os.tmpdir(), `symphony-relay-local-${key}`, 'postgres');
}
export const DEVELOPMENT_POLICY = `${PROJECT_ROOT}policy/development.json`;
const RELAY_LOGIN = 'relay_local';
const PRODUCER_LOGIN = 'demo_producer';

function say(line: string): void {
  process.stderr.write(`symphony-relay: ${line}\n`);
}

function withLogin(adminUrl: string, user: string, password: string): string {
  const url = new URL(adminUrl);
  url.username = user;
  url.password = password;
  return url.toString();
}

async function prepareDatabase(adminUrl: string) {
  await migrate(adminUrl);
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await seedPolicy(admin, { file: DEVELOPMENT_POLICY });
    // Fresh passwords every start: they live only in this process. force: this cluster is
    // local's own, and data directories made before the login marker hold unmarked logins.
    const relayPassword = randomBytes(18).toString('base64url');
    const producerPassword = randomBytes(18).toString('base64url');
    await ensureLoginRole(admin, {
      name: RELAY_LOGIN,
      password: relayPassword,
      actsAs: 'symphony_executor',
      force: true,
    });
    await ensureLoginRole(admin, {
      name: PRODUCER_LOGIN,
      password: producerPassword,
      actsAs: 'symphony_ingest',
      force: true,
    });
    return {
      relayUrl: withLogin(adminUrl, RELAY_LOGIN, relayPassword),
      producerUrl: withLogin(adminUrl, PRODUCER_LOGIN, producerPassword),
    };
  } finally {
    await admin.end();
  }
}

export function registerLocalCommand(program: Command): void {
  program
    .command('local')
    .description(
      'the whole system on one machine: an embedded PostgreSQL 18 (data in .data/), migrations, a development ' +
        'policy, the relayer on the sandbox rail and a demo producer; Ctrl-C stops everything',
    )
    .option('--rate <items/s>', 'demo producer rate (0 = no producer)', '50')
    .option(
      '--rail <rail_type>',
      'rail_type of the demo payments (configure it in SYMPHONY_RAILS, e.g. your own module rail)',
      'sandbox',
    )
    .option('--pg-port <port>', 'port of the embedded PostgreSQL (default: a free one)')
    .option(
      '--data-dir <dir>',
      'data directory of the embedded PostgreSQL (default: .data/postgres in the checkout; as root, ' +
        'below the system temporary directory when the postgres OS user cannot enter the checkout)',
    )
    .action(async (options: { rate: string; rail: string; pgPort?: string; dataDir?: string }) => {
      const rate = Number(options.rate);
      if (!Number.isFinite(rate) || rate < 0 || rate > 100_000) {
        throw new Error(`--rate "${options.rate}" is invalid: expected a number from 0 to 100000`);
      }
      // Checked before PostgreSQL starts: demo payments on a rail nobody serves would all fail.
      const configuredRails = Object.keys(loadConfig(process.env).rails);
      if (rate > 0 && !configuredRails.includes(options.rail)) {
        throw new CliError(
          `--rail "${options.rail}" is not a configured rail: add it to SYMPHONY_RAILS (configured: ${configuredRails.join(', ')})`,
          2,
        );
      }
      // The demo's sandbox rail fails on purpose; per-attempt warnings would bury the progress
      // lines, so the local default is errors only (LOG_LEVEL=info shows everything).
      const level = LOG_LEVELS.find((known) => known === process.env.LOG_LEVEL) ?? 'error';
      const logger = createLogger({ level, name: 'symphony-relay' });
      const dataDir = path.resolve(options.dataDir ?? defaultLocalDataDir());
      say(`starting the embedded PostgreSQL 18 (data in ${dataDir})…`);
      const server = await startDetachedEmbeddedPostgres({
        dataDir,
        persistent: true,
        port: options.pgPort === undefined ? undefined : Number(options.pgPort),
      });
      let runtime: Runtime;
      let producerUrl: string;
      try {
        const urls = await prepareDatabase(server.adminUrl);
        producerUrl = urls.producerUrl;
        runtime = await startRuntime(
          { SYMPHONY_WORKER_ID: 'local-1', ...process.env, DATABASE_URL: urls.relayUrl },
          logger,
        );
      } catch (error) {
        // Never leave an orphaned postgres holding the data directory.
        await server.stop();
        throw error;
      }
      const producer =
        rate > 0
          ? startDemoProducer({
              connectionString: producerUrl,
              itemsPerSecond: rate,
              railType: options.rail,
              logger,
            })
          : undefined;
      const http = runtime.server ? `http://localhost:${runtime.server.port}` : undefined;
      say(
        `PostgreSQL 18 on 127.0.0.1:${server.port}; migrated; policy seeded; relayer ${runtime.config.workerId} running`,
      );
      if (http) say(`metrics ${http}/metrics, probes ${http}/healthz and ${http}/readyz`);
      say(
        producer
          ? `demo producer enqueueing ${rate} payments/s on the ${options.rail} rail`
          : 'no demo producer (--rate 0)',
      );
      say('progress every 5 s; Ctrl-C stops everything cleanly');
      const progress = startProgressReporter(runtime.metrics, 5_000);
      stopOnSignals(async () => {
        progress.stop();
        await producer?.stop();
        await runtime.stop();
        await server.stop();
      }, logger);
      await new Promise<never>(() => undefined);
    });
}
