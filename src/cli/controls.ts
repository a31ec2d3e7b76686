import type { Command } from 'commander';
import type pg from 'pg';
import {
  listFailedItems,
  pauseDispatch,
  redriveOutboxItem,
  resumeDispatch,
  type FailedItem,
  type PauseScope,
  type RedriveResult,
} from '../db/controls.ts';
import { databaseFailure, withDatabaseSession } from './database-session.ts';
import { CliError, requireDatabaseUrl } from './errors.ts';

const ROLE = 'symphony_control';
const DATABASE_URL_HELP = `a login that may act as ${ROLE} (default: $DATABASE_URL)`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const BULK_DEFAULT_LIMIT = 1000;

interface ScopeOptions {
  all?: boolean;
  rail?: string;
  participant?: string;
}

/** Runs `work` as symphony_control; a database refusal becomes one line. */
async function asControl<T>(
  command: string,
  databaseUrl: string | undefined,
  work: (db: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const url = requireDatabaseUrl(databaseUrl, command);
  return withDatabaseSession({ connectionString: url, command, actAs: ROLE }, work).catch(
    (error: unknown) => {
      throw databaseFailure(command, ROLE, error);
    },
  );
}

function scopeOf(
  command: string,
  options: ScopeOptions,
): { scope: PauseScope; target: string | null } {
  const given = [
    options.all ? ({ scope: 'all', target: null } as const) : undefined,
    options.rail !== undefined ? ({ scope: 'rail', target: options.rail } as const) : undefined,
    options.participant !== undefined
      ? ({ scope: 'participant', target: options.participant } as const)
      : undefined,
  ].filter((scope) => scope !== undefined);
  if (given.length !== 1) {
    throw new CliError(
      `${command}: give exactly one of --all, --rail <rail_type> or --participant <participant_id>`,
      2,
    );
  }
  return given[0]!;
}

function describeScope(scope: PauseScope, target: string): string {
  return scope === 'all' ? 'all dispatch' : `${scope} ${target}`;
}

function parseLimit(command: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  if (!/^\d{1,5}$/.test(raw) || Number(raw) < 1 || Number(raw) > 10000) {
    throw new CliError(
      `${command}: --limit must be a whole number from 1 to 10000, got ${JSON.stringify(raw)}`,
      2,
    );
  }
  return Number(raw);
}

function renderFailed(items: readonly FailedItem[]): string {
  if (items.length === 0) return '(no FAILED items waiting for a re-drive)';
  const header = [
    'outbox_id',
    'rail',
    'participant',
    'seq',
    'attempts',
    'drive',
    'error',
    'failed_at',
  ];
  const rows = items.map((item) => [
    item.outboxId,
    item.railType,
    item.participantId,
    item.sequenceId,
    String(item.attempts),
    String(item.drive),
    item.errorCode ?? '-',
    item.failedAt.toISOString(),
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => row[column]!.length)),
  );
  return [header, ...rows]
    .map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function renderRedrive(result: RedriveResult): string {
  return result.redriven
    ? `${result.outboxId}: re-driven (drive ${result.drive}); queued again with the same idempotency key`
    : `${result.outboxId}: this failure was already re-driven by ${result.redrivenBy} at ${result.redrivenAt.toISOString()} (drive ${result.drive}); nothing done`;
}

export function registerControlCommands(program: Command): void {
  program
    .command('pause')
    .summary(
      'stop every worker from claiming items of all rails, one rail or one participant (audited)',
    )
    .description(
      `a kill switch for the whole fleet, set as ${ROLE} and recorded in outbox_control_audit ` +
        'with the login, the server time and the reason. It takes effect from the next claim of ' +
        'every worker; items already being dispatched finish and are recorded',
    )
    .option('--all', 'pause all dispatch')
    .option('--rail <rail_type>', 'pause one rail type')
    .option('--participant <participant_id>', 'pause one participant')
    .requiredOption('--reason <text>', 'why, for the audit trail')
    .option('--database-url <url>', DATABASE_URL_HELP)
    .action(async (options: ScopeOptions & { reason: string; databaseUrl?: string }) => {
      const { scope, target } = scopeOf('pause', options);
      const change = await asControl('pause', options.databaseUrl, (db) =>
        pauseDispatch(db, { scope, target, reason: options.reason }),
      );
      const what = describeScope(change.scope, change.target);
      console.log(
        change.changed
          ? `paused ${what} (by ${change.pausedBy} at ${change.pausedAt.toISOString()})`
          : `${what} was already paused by ${change.pausedBy} at ${change.pausedAt.toISOString()} (reason: ${change.reason}); nothing changed`,
      );
    });

  program
    .command('resume')
    .summary('lift a pause set with `pause` (audited)')
    .option('--all', 'resume all dispatch')
    .option('--rail <rail_type>', 'resume one rail type')
    .option('--participant <participant_id>', 'resume one participant')
    .option('--reason <text>', 'why, for the audit trail', 'resumed by operator')
    .option('--database-url <url>', DATABASE_URL_HELP)
    .action(async (options: ScopeOptions & { reason: string; databaseUrl?: string }) => {
      const { scope, target } = scopeOf('resume', options);
      const change = await asControl('resume', options.databaseUrl, (db) =>
        resumeDispatch(db, { scope, target, reason: options.reason }),
      );
      const what = describeScope(change.scope, change.target);
      console.log(
        change.changed
          ? `resumed ${what} (paused since ${change.pausedSince?.toISOString()})`
          : `${what} was not paused; nothing changed`,
      );
    });

  program
    .command('failed')
    .summary('list dead letters: FAILED items not re-driven, oldest failure first')
    .option('--rail <rail_type>', 'only this rail type')
    .option('--error-code <code>', 'only failures with this error code (e.g. HTTP_422)')
    .option('--limit <n>', 'at most this many (1-10000)', '100')
    .option('--json', 'print one JSON array')
    .option('--database-url <url>', DATABASE_URL_HELP)
    .action(
      async (options: {
        rail?: string;
        errorCode?: string;
        limit: string;
        json?: boolean;
        databaseUrl?: string;
      }) => {
        const limit = parseLimit('failed', options.limit, 100);
        const items = await asControl('failed', options.databaseUrl, (db) =>
          listFailedItems(db, { railType: options.rail, errorCode: options.errorCode, limit }),
        );
        console.log(options.json ? JSON.stringify(items) : renderFailed(items));
      },
    );

  program
    .command('redrive')
    .summary('send FAILED items to their rail again with the same idempotency key (audited)')
    .description(
      'one item (--outbox-id) or every dead letter of a rail type and/or error code ' +
        '(--rail, --error-code; --dry-run lists them and changes nothing). Only FAILED items: ' +
        'a queued or DISPATCHED item is refused (P7501); re-driving a failure twice does ' +
        'nothing the second time and says so',
    )
    .option('--outbox-id <uuid>', 'the FAILED item to re-drive')
    .option('--rail <rail_type>', 'bulk: dead letters of this rail type')
    .option('--error-code <code>', 'bulk: dead letters with this error code')
    .option('--limit <n>', `bulk: at most this many (1-10000, default ${BULK_DEFAULT_LIMIT})`)
    .option('--dry-run', 'bulk: list what would be re-driven, change nothing')
    .requiredOption('--reason <text>', 'why, for the audit trail')
    .option('--database-url <url>', DATABASE_URL_HELP)
    .action(
      async (options: {
        outboxId?: string;
        rail?: string;
        errorCode?: string;
        limit?: string;
        dryRun?: boolean;
        reason: string;
        databaseUrl?: string;
      }) => {
        const bulk = options.rail !== undefined || options.errorCode !== undefined;
        if (options.outboxId !== undefined) {
          if (bulk || options.dryRun || options.limit !== undefined) {
            throw new CliError(
              'redrive: --outbox-id re-drives one item; --rail, --error-code, --limit and --dry-run are for the bulk form',
              2,
            );
          }
          if (!UUID.test(options.outboxId)) {
            throw new CliError(
              `redrive: --outbox-id must be an outbox item id (a UUID), got ${JSON.stringify(options.outboxId)}`,
              2,
            );
          }
          const outboxId = options.outboxId;
          const result = await asControl('redrive', options.databaseUrl, (db) =>
            redriveOutboxItem(db, { outboxId, reason: options.reason }),
          );
          console.log(renderRedrive(result));
          return;
        }
        if (!bulk) {
          throw new CliError(
            'redrive: give --outbox-id <uuid>, or --rail and/or --error-code for the bulk form (see `symphony-relay failed`)',
            2,
          );
        }
        const limit = parseLimit('redrive', options.limit, BULK_DEFAULT_LIMIT);
        await asControl('redrive', options.databaseUrl, async (db) => {
          const items = await listFailedItems(db, {
            railType: options.rail,
            errorCode: options.errorCode,
            limit,
          });
          if (options.dryRun) {
            console.log(renderFailed(items));
            console.log(`dry run: ${items.length} item(s) would be re-driven; nothing changed`);
            return;
          }
          let redriven = 0;
          for (const item of items) {
            // One statement per item: each re-drive commits on its own, and a rerun after an
            // interruption re-drives only what is still FAILED.
            const result = await redriveOutboxItem(db, {
              outboxId: item.outboxId,
              reason: options.reason,
            });
            console.log(renderRedrive(result));
            if (result.redriven) redriven += 1;
          }
          console.log(`re-drove ${redriven} of ${items.length} listed item(s)`);
        });
      },
    );
}
