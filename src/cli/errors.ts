import { ConfigError } from '../config-error.ts';
import { readSecretVariable } from '../secret-variable.ts';

/** An error the CLI prints as one line (no stack) before exiting non-zero. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/**
 * The connection string of a database command: --database-url, else DATABASE_URL, else the
 * file DATABASE_URL_FILE names (a mounted secret). The value is never part of a message.
 */
export function requireDatabaseUrl(option: string | undefined, purpose: string): string {
  if (option) return option;
  const fromEnvironment = readSecretOrExit(process.env, 'DATABASE_URL', purpose);
  if (fromEnvironment === undefined) {
    throw new CliError(
      `DATABASE_URL is not set: ${purpose} needs a PostgreSQL 18 connection string ` +
        '(set DATABASE_URL, point DATABASE_URL_FILE at a file holding it, or pass --database-url)',
      2,
    );
  }
  return fromEnvironment;
}

/** NAME or the contents of NAME_FILE (see readSecretVariable), as a usage error (exit 2). */
export function readSecretOrExit(
  env: NodeJS.ProcessEnv,
  name: string,
  purpose: string,
): string | undefined {
  try {
    return readSecretVariable(env, name)?.value;
  } catch (error) {
    if (error instanceof ConfigError) throw new CliError(`${purpose}: ${error.message}`, 2);
    throw error;
  }
}
