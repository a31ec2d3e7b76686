import pg from 'pg';

// int8 (BIGINT) values such as sequence ids stay strings; counts are converted where read.
export type Queryable = Pick<pg.Pool | pg.PoolClient | pg.Client, 'query'>;

export interface PoolOptions {
  connectionString: string;
  applicationName: string;
  max: number;
  /** NOLOGIN role every connection switches to before its first query (least privilege). */
  actAs?: string;
  /** Server-side limit per statement, so a stuck query fails instead of hanging a worker. */
  statementTimeoutMs?: number;
}

const ROLE_NAME = /^[a-z_][a-z0-9_]*$/;

export function createPool(options: PoolOptions): pg.Pool {
  if (options.actAs !== undefined && !ROLE_NAME.test(options.actAs)) {
    throw new Error(`role name "${options.actAs}" is not a plain lowercase identifier`);
  }
  return new pg.Pool({
    connectionString: options.connectionString,
    application_name: options.applicationName,
    max: options.max,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
    ...(options.statementTimeoutMs ? { statement_timeout: options.statementTimeoutMs } : {}),
    // `role` set as a startup parameter is SET ROLE performed by the server before the
    // session accepts its first query: no query ever runs as the login role itself, and a
    // login that may not act as the role cannot connect at all.
    ...(options.actAs ? { options: `-c role=${options.actAs}` } : {}),
  });
}
