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

export function requireDatabaseUrl(value: string | undefined, purpose: string): string {
  if (!value) {
    throw new CliError(
      `DATABASE_URL is not set: ${purpose} needs a PostgreSQL 18 connection string ` +
        '(set DATABASE_URL or pass --database-url)',
      2,
    );
  }
  return value;
}
