import { readFile } from 'node:fs/promises';
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
  await applyTemplateMutation(withDatabaseName(server.adminUrl, TEMPLATE_DATABASE));
  project.provide('postgresAdminUrl', server.adminUrl);
  return async () => {
    await dropTestObjects(server.adminUrl);
    await server.stop();
  };
}

/**
 * Each test file drops its own database and login roles; this sweep catches the ones a
 * failed or interrupted file left behind, which matters on a long-lived TEST_DATABASE_URL
 * server (roles are cluster-wide). Only the suite's own names are touched.
 */
async function dropTestObjects(adminUrl: string): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const databases = await admin.query<{ name: string }>(
      `SELECT datname AS name FROM pg_database WHERE datname ~ '^t_[0-9]+_[0-9a-f]{8}$' OR datname = $1`,
      [TEMPLATE_DATABASE],
    );
    for (const { name } of databases.rows) {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
    const roles = await admin.query<{ name: string }>(
      `SELECT rolname AS name FROM pg_roles WHERE rolname ~ '^login_[0-9]+_[0-9a-f]{8}$'`,
    );
    for (const { name } of roles.rows) await admin.query(`DROP ROLE IF EXISTS ${name}`);
  } finally {
    await admin.end();
  }
}

/**
 * `npm run verify:proofs` only: SQL that weakens the migrated template (drops a trigger,
 * revokes a grant, ...) so a register row's tests can be run against the mutated schema.
 * Never set in a normal run; the suite then tests exactly what the migrations build.
 */
export const TEMPLATE_MUTATION_ENV = 'SYMPHONY_TEST_TEMPLATE_MUTATION';

async function applyTemplateMutation(templateUrl: string): Promise<void> {
  const file = process.env[TEMPLATE_MUTATION_ENV];
  if (!file) return;
  const sql = await readFile(file, 'utf8');
  const client = new pg.Client({ connectionString: templateUrl });
  await client.connect();
  try {
    await client.query(sql);
  } catch (error) {
    throw new Error(`${TEMPLATE_MUTATION_ENV} (${file}) failed: ${(error as Error).message}`);
  } finally {
    await client.end();
  }
}
