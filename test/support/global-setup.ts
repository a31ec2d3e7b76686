import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { migrate } from '../../src/db/migrate/runner.ts';
import { startTestServer } from './postgres-server.ts';
import { TEMPLATE_DATABASE, withDatabaseName } from './urls.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    postgresAdminUrl: string;
  }
}

/** Starts one PostgreSQL 18, migrates a template once; each test file copies the template. */
export default async function setup(project: TestProject) {
  const server = await startTestServer();
  const admin = new pg.Client({ connectionString: server.adminUrl });
  await admin.connect();
  try {
    const version = await admin.query<{ v: string }>(
      `SELECT current_setting('server_version_num') AS v`,
    );
    if (Number(version.rows[0]?.v) < 180000) {
      throw new Error(
        `the test PostgreSQL (${server.source}) is not version 18: the suite needs PostgreSQL 18`,
      );
    }
    await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DATABASE} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${TEMPLATE_DATABASE}`);
  } finally {
    await admin.end();
  }
  await migrate(withDatabaseName(server.adminUrl, TEMPLATE_DATABASE));
  project.provide('postgresAdminUrl', server.adminUrl);
  return async () => {
    await server.stop();
  };
}
