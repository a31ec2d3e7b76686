import { splitStatements } from './sql-statements.ts';

const TRANSACTION_CONTROL =
  /^(BEGIN|COMMIT|ROLLBACK|START\s+TRANSACTION|END|SAVEPOINT|RELEASE|ABORT)\b/i;

export interface LintProblem {
  statement: string;
  reason: string;
}

/**
 * The runner owns transactions: a migration that opens or ends one itself would
 * commit half a file, so top-level transaction control is refused.
 */
export function lintMigrationSql(sql: string): LintProblem[] {
  return splitStatements(sql)
    .filter((statement) => TRANSACTION_CONTROL.test(statement))
    .map((statement) => ({
      statement: statement.split('\n')[0] ?? statement,
      reason:
        'top-level transaction control is not allowed: the runner wraps each file in its own ' +
        'transaction (or runs it without one when the file carries the no-transaction marker)',
    }));
}
