import { readFile, rm, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import pg from 'pg';
import { migrate } from '../db/migrate/runner.ts';
import { renderSchemaSnapshot, schemaFingerprint, SNAPSHOT_FILE } from '../db/migrate/snapshot.ts';
import { startEmbeddedPostgres, temporaryDataDir } from '../embedded/postgres.ts';

/** Migrates a throw-away embedded PostgreSQL 18 and renders its catalog. */
async function renderFromScratch(): Promise<string> {
  const dataDir = temporaryDataDir('symphony-snapshot');
  const server = await startEmbeddedPostgres({ dataDir, persistent: false });
  try {
    await migrate(server.adminUrl);
    const client = new pg.Client({ connectionString: server.adminUrl });
    await client.connect();
    try {
      return await renderSchemaSnapshot(client);
    } finally {
      await client.end();
    }
  } finally {
    await server.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

export function registerSchemaCommand(program: Command): void {
  const schema = program.command('schema').description('schema snapshot and fingerprint');
  schema
    .command('snapshot')
    .description(
      'migrate a throw-away embedded PostgreSQL 18, render its catalog and write schema/snapshot.txt',
    )
    .action(async () => {
      const snapshot = await renderFromScratch();
      await writeFile(SNAPSHOT_FILE, snapshot);
      console.log(`wrote ${SNAPSHOT_FILE}\nfingerprint sha256:${schemaFingerprint(snapshot)}`);
    });
  schema
    .command('fingerprint')
    .description('print the sha256 of the committed schema snapshot')
    .action(async () => {
      console.log(`sha256:${schemaFingerprint(await readFile(SNAPSHOT_FILE, 'utf8'))}`);
    });
}
