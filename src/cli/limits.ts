import type { Command } from 'commander';
import {
  OUTBOX_LIMIT_NAMES,
  outboxCurrentLimits,
  setOutboxLimit,
  type OutboxLimitName,
} from '../db/outbox.ts';
import { databaseFailure, withDatabaseSession } from './database-session.ts';
import { CliError, requireDatabaseUrl } from './errors.ts';

const ROLE = 'symphony_control';

function databaseUrl(option: string | undefined, command: string): string {
  return requireDatabaseUrl(option, command);
}

function parseLimitValue(raw: string): number {
  if (!/^\d{1,9}$/.test(raw)) {
    throw new CliError(
      `limits set: --value must be a whole number in digits only (no sign, point or exponent; \`limits show\` prints the current values), got ${JSON.stringify(raw)}`,
      2,
    );
  }
  return Number(raw);
}

export function registerLimitsCommand(program: Command): void {
  const limits = program
    .command('limits')
    .description(
      'the operator limits every session obeys (retry ceiling, maximum lease and retry delay, payload size and depth)',
    );
  limits
    .command('show')
    .summary('print the operator limits')
    .option('--json', 'print one JSON object')
    .option('--database-url <url>', `a login that may act as ${ROLE} (default: $DATABASE_URL)`)
    .action(async (options: { json?: boolean; databaseUrl?: string }) => {
      const url = databaseUrl(options.databaseUrl, 'limits show');
      const current = await withDatabaseSession(
        { connectionString: url, command: 'limits show', actAs: ROLE },
        (db) => outboxCurrentLimits(db),
      ).catch((error: unknown) => {
        throw databaseFailure('limits show', ROLE, error);
      });
      if (options.json) {
        console.log(JSON.stringify(current));
        return;
      }
      console.log(
        [
          `retry_ceiling             ${current.retryCeiling}`,
          `max_lease_seconds         ${current.maxLeaseSeconds}`,
          `max_retry_delay_seconds   ${current.maxRetryDelaySeconds}`,
          `max_payload_bytes         ${current.maxPayloadBytes}`,
          `max_payload_depth         ${current.maxPayloadDepth}`,
          `updated_at                ${current.updatedAt.toISOString()}`,
        ].join('\n'),
      );
    });
  limits
    .command('set')
    .summary('change one operator limit (audited)')
    .description(
      `change one limit as ${ROLE}; the change is recorded in outbox_control_audit with the login, ` +
        'the server time and the reason. An out-of-range value is refused and changes nothing',
    )
    .requiredOption('--name <limit>', `one of ${OUTBOX_LIMIT_NAMES.join(', ')}`)
    .requiredOption('--value <n>', 'the new value')
    .requiredOption('--reason <text>', 'why, for the audit trail')
    .option('--database-url <url>', `a login that may act as ${ROLE} (default: $DATABASE_URL)`)
    .action(
      async (options: { name: string; value: string; reason: string; databaseUrl?: string }) => {
        if (!(OUTBOX_LIMIT_NAMES as readonly string[]).includes(options.name)) {
          throw new CliError(
            `limits set: unknown limit ${JSON.stringify(options.name)}; expected one of ${OUTBOX_LIMIT_NAMES.join(', ')}`,
            2,
          );
        }
        const value = parseLimitValue(options.value);
        const url = databaseUrl(options.databaseUrl, 'limits set');
        const change = await withDatabaseSession(
          { connectionString: url, command: 'limits set', actAs: ROLE },
          (db) =>
            setOutboxLimit(db, {
              name: options.name as OutboxLimitName,
              value,
              reason: options.reason,
            }),
        ).catch((error: unknown) => {
          throw databaseFailure('limits set', ROLE, error);
        });
        console.log(`${change.name}: ${change.oldValue} -> ${change.newValue}`);
      },
    );
}
