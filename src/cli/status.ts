import type { Command } from 'commander';
import {
  outboxQueueStats,
  outboxQueueStatsByRail,
  type QueueStats,
  type RailQueueStats,
} from '../db/outbox.ts';
import { activePauses, type Pause } from '../db/controls.ts';
import { recentAttemptCounts, type AttemptCounts } from '../db/status.ts';
import { databaseFailure, withDatabaseSession } from './database-session.ts';
import { requireDatabaseUrl } from './errors.ts';

const ROLE = 'symphony_readonly';
const ATTEMPT_WINDOW_SECONDS = 3600;
/** Always reported, so a zero is visible; other states appear when they occurred. */
const REPORTED_STATES = ['DISPATCHED', 'RETRYABLE', 'FAILED', 'ZOMBIE_REQUEUE'];

export interface StatusReport extends QueueStats {
  /** Queue depth per rail type: a rail no worker serves shows here, due and waiting. */
  rails: RailQueueStats[];
  attemptsLastHour: AttemptCounts;
  /** Active kill switches: the items they cover are due but never claimed. */
  pauses: Pause[];
}

async function readStatus(connectionString: string): Promise<StatusReport> {
  return withDatabaseSession({ connectionString, command: 'status', actAs: ROLE }, async (db) => {
    const queue = await outboxQueueStats(db);
    const rails = await outboxQueueStatsByRail(db);
    const recent = await recentAttemptCounts(db, ATTEMPT_WINDOW_SECONDS);
    const pauses = await activePauses(db);
    const attemptsLastHour: AttemptCounts = {};
    for (const state of REPORTED_STATES) attemptsLastHour[state] = 0;
    Object.assign(attemptsLastHour, recent);
    return { ...queue, rails, attemptsLastHour, pauses };
  }).catch((error: unknown) => {
    throw databaseFailure('status', ROLE, error);
  });
}

function render(report: StatusReport): string {
  const age =
    report.oldestDueAgeSeconds === null ? '-' : `${report.oldestDueAgeSeconds.toFixed(1)} s`;
  const lines = [
    `pending               ${report.pending}`,
    `due                   ${report.due}`,
    `leased                ${report.leased}`,
    `expired leases        ${report.expiredLeases}`,
    `oldest due item age   ${age}`,
    'by rail (pending / due / oldest due age):',
    ...(report.rails.length === 0
      ? ['  (queue empty)']
      : report.rails.map(
          (rail) =>
            `  ${rail.railType.padEnd(20)}${rail.pending} / ${rail.due} / ${
              rail.oldestDueAgeSeconds === null ? '-' : `${rail.oldestDueAgeSeconds.toFixed(1)} s`
            }`,
        )),
    'pauses (no worker claims these items until resumed):',
    ...(report.pauses.length === 0
      ? ['  (none)']
      : report.pauses.map(
          (pause) =>
            `  ${(pause.scope === 'all' ? 'all' : `${pause.scope} ${pause.target}`).padEnd(20)}since ${pause.pausedAt.toISOString()} by ${pause.pausedBy}: ${pause.reason}`,
        )),
    'attempts in the last hour:',
    ...Object.entries(report.attemptsLastHour).map(
      ([state, count]) => `  ${state.padEnd(20)}${count}`,
    ),
  ];
  return lines.join('\n');
}

export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .summary('queue depth, oldest due item and last-hour attempts by state')
    .description(
      `show the outbox queue (pending, due, leased, expired leases awaiting repair, age of the ` +
        `oldest due item) and the attempts ` +
        `recorded in the last hour by state, read as ${ROLE}`,
    )
    .option('--json', 'print one JSON object instead of the table (for scripts)')
    .option(
      '--database-url <url>',
      `connection string of a login that is a member of ${ROLE} (default: $DATABASE_URL)`,
    )
    .action(async (options: { json?: boolean; databaseUrl?: string }) => {
      const url = requireDatabaseUrl(options.databaseUrl, 'status');
      const report = await readStatus(url);
      console.log(options.json ? JSON.stringify(report) : render(report));
    });
}
