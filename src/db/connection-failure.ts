import { sqlStateOf } from './errors.ts';

/** Where a connection string points, without its credentials: `host:port/database`. */
export function connectionTarget(connectionString: string): string {
  try {
    const url = new URL(connectionString);
    const host = url.hostname || 'localhost';
    return `${host}:${url.port || '5432'}${url.pathname || '/'}`;
  } catch {
    return '(unparseable connection string)';
  }
}

/**
 * Why a connection to PostgreSQL failed, and what to do, as one line for an operator.
 * Never echoes the password; the raw driver text (`connect ECONNREFUSED …`) alone says
 * neither. `variable` names the setting to check (DATABASE_URL or --database-url).
 */
export function describeConnectionFailure(
  error: unknown,
  connectionString: string,
  variable = 'DATABASE_URL',
): string {
  const target = connectionTarget(connectionString);
  const code = (error as { code?: unknown } | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  const state = sqlStateOf(error);
  const at = `cannot connect to PostgreSQL at ${target}`;
  switch (code) {
    case 'ECONNREFUSED':
      return `${at}: connection refused. Is the server (or PgBouncer) running, and are the host and port in ${variable} right?`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `${at}: host name not found. Check the host in ${variable}`;
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${at}: no route or no answer (${code}). Check the host in ${variable} and the network between us`;
    case 'ECONNRESET':
      return `${at}: the server closed the connection (ECONNRESET). Check that ${variable} names a PostgreSQL server and that its TLS settings match`;
  }
  if (state === '28P01' || state === '28000') {
    return `${at}: ${message} (SQLSTATE ${state}). Check the user and password in ${variable}`;
  }
  if (state === '3D000') {
    return `${at}: ${message} (SQLSTATE ${state}). Check the database name in ${variable}`;
  }
  if (state === '57P03' || state === '53300') {
    return `${at}: ${message} (SQLSTATE ${state}). The server is starting, shutting down or full; try again shortly`;
  }
  // Connected, then cut: a restart, a failover or pg_terminate_backend (57P01/57P02).
  if (state === '57P01' || state === '57P02' || /Connection terminated/i.test(message)) {
    return `the connection to PostgreSQL at ${target} was cut: ${message}${state ? ` (SQLSTATE ${state})` : ''}. The server restarted or an administrator ended the session; start again once it accepts connections`;
  }
  if (/timeout/i.test(message)) {
    return `${at}: no answer in time (${message}). Check the host and port in ${variable} and the server's load`;
  }
  return `${at}: ${message}${state ? ` (SQLSTATE ${state})` : ''}`;
}

/** True for a failure to establish a connection (as opposed to a failed query on one). */
export function isConnectFailure(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  const state = sqlStateOf(error);
  return (
    (typeof code === 'string' && /^E[A-Z]+$/.test(code)) ||
    state?.startsWith('28') === true ||
    state === '3D000' ||
    state === '57P03' ||
    state === '53300' ||
    /timeout expired|Connection terminated/i.test((error as Error | undefined)?.message ?? '')
  );
}
