import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import pg from 'pg';
import { migrate } from '../db/migrate/runner.ts';
import { seedPolicy } from '../db/policy.ts';
import { ensureLoginRole } from '../db/roles.ts';
import { startDemoProducer } from '../demo/producer.ts';
import { startEmbeddedPostgres } from '../embedded/postgres.ts';
import { createLogger } from '../observability/logger.ts';
import { startProgressReporter } from './progress.ts';
import { startRuntime, stopOnSignals } from './runtime.ts';

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const LOCAL_DATA_DIR = `${PROJECT_ROOT}.data/postgres`;
export const DEVELOPMENT_POLICY = `${PROJECT_ROOT}policy/development.json`;
const RELAY_LOGIN = 'symphony_relay_local';
const PRODUCER_LOGIN = 'symphony_demo_producer';

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
    // Fresh passwords every start: they live only in this process.
    const relayPassword = randomBytes(18).toString('base64url');
    const producerPassword = randomBytes(18).toString('base64url');
    await ensureLoginRole(admin, {
      name: RELAY_LOGIN,
      password: relayPassword,
      actsAs: 'symphony_executor',
    });
    await ensureLoginRole(admin, {
      name: PRODUCER_LOGIN,
      password: producerPassword,
      actsAs: 'symphony_ingest',
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
    .option('--pg-port <port>', 'port of the embedded PostgreSQL (default: a free one)')
    .action(async (options: { rate: string; pgPort?: string }) => {
      const rate = Number(options.rate);
      if (!Number.isFinite(rate) || rate < 0 || rate > 100_000) {
        throw new Error(`--rate "${options.rate}" is invalid: expected a number from 0 to 100000`);
      }
      const logger = createLogger({ level: 'info', name: 'symphony-relay' });
      logger.info(
        { event: 'embedded_postgres_starting', dataDir: '.data/postgres' },
        'starting PostgreSQL 18',
      );
      const server = await startEmbeddedPostgres({
        dataDir: LOCAL_DATA_DIR,
        persistent: true,
        port: options.pgPort === undefined ? undefined : Number(options.pgPort),
      });
      const { relayUrl, producerUrl } = await prepareDatabase(server.adminUrl);
      const runtime = await startRuntime(
        { SYMPHONY_WORKER_ID: 'local-1', ...process.env, DATABASE_URL: relayUrl },
        logger,
      );
      const producer =
        rate > 0
          ? startDemoProducer({
              connectionString: producerUrl,
              itemsPerSecond: rate,
              railType: 'sandbox',
              logger,
            })
          : undefined;
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
