import type { Command } from 'commander';
import {
  activePauses,
  railOverview,
  setRailSettings,
  type Pause,
  type RailOverview,
  type RailSettingsChange,
} from '../db/controls.ts';
import { databaseFailure, withDatabaseSession } from './database-session.ts';
import { CliError, requireDatabaseUrl } from './errors.ts';

const ROLE = 'symphony_control';
const DATABASE_URL_HELP = `a login that may act as ${ROLE} (default: $DATABASE_URL)`;

interface SetOptions {
  maxPerSecond?: string;
  ordered?: boolean;
  unordered?: boolean;
  breakerThreshold?: string;
  breakerCooldownSeconds?: string;
  breakerMaxCooldownSeconds?: string;
  reason: string;
  databaseUrl?: string;
}

// The database checks each range again and names it; these say what to type instead.
const RANGES = {
  '--max-per-second': 'from 0 to 100000 (0 removes the limit)',
  '--breaker-threshold': 'from 0 to 1000 (0 removes the breaker)',
  '--breaker-cooldown-seconds': 'of seconds from 1 to 86400',
  '--breaker-max-cooldown-seconds': 'of seconds from the cool-down to 86400',
} as const;

function wholeNumber(option: keyof typeof RANGES, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d{1,9}$/.test(raw)) {
    throw new CliError(
      `rail set: ${option} must be a whole number ${RANGES[option]}, in digits only, got ${JSON.stringify(raw)}`,
      2,
    );
  }
  return Number(raw);
}

function changeFrom(railType: string, options: SetOptions): RailSettingsChange {
  if (options.ordered && options.unordered) {
    throw new CliError('rail set: give --ordered or --unordered, not both', 2);
  }
  const change: RailSettingsChange = {
    railType,
    maxPerSecond: wholeNumber('--max-per-second', options.maxPerSecond),
    ordered: options.ordered ? true : options.unordered ? false : undefined,
    breakerThreshold: wholeNumber('--breaker-threshold', options.breakerThreshold),
    breakerCooldownSeconds: wholeNumber(
      '--breaker-cooldown-seconds',
      options.breakerCooldownSeconds,
    ),
    breakerMaxCooldownSeconds: wholeNumber(
      '--breaker-max-cooldown-seconds',
      options.breakerMaxCooldownSeconds,
    ),
    reason: options.reason,
  };
  const { railType: _rail, reason: _reason, ...settings } = change;
  if (Object.values(settings).every((value) => value === undefined)) {
    throw new CliError(
      'rail set: nothing to change; give --max-per-second, --ordered/--unordered or a --breaker-* option',
      2,
    );
  }
  return change;
}

function describeRail(rail: RailOverview, pauses: readonly Pause[]): string {
  const breaker =
    rail.breakerThreshold === null
      ? 'off'
      : `${rail.breakerState} (opens after ${rail.breakerThreshold} consecutive transport failures; ` +
        `cool-down ${rail.breakerCooldownSeconds} s doubling up to ${rail.breakerMaxCooldownSeconds} s` +
        (rail.breakerState === 'closed'
          ? `; ${rail.consecutiveFailures} failure(s) in a row now)`
          : `; open until ${rail.openUntil?.toISOString()}, cool-down ${rail.cooldownSeconds} s)`);
  const paused = pauses.filter(
    (pause) => pause.scope === 'all' || (pause.scope === 'rail' && pause.target === rail.railType),
  );
  return [
    `rail ${rail.railType}`,
    `  rate limit     ${rail.maxPerSecond === null ? 'none' : `${rail.maxPerSecond}/s for the whole fleet`}`,
    `  ordering       ${rail.ordered ? `per participant (${rail.blockedParticipants} participant(s) blocked behind a FAILED head)` : 'none'}`,
    `  breaker        ${breaker}`,
    `  paused         ${paused.length === 0 ? 'no' : paused.map((pause) => `${pause.scope === 'all' ? 'all dispatch' : 'yes'} since ${pause.pausedAt.toISOString()} by ${pause.pausedBy}: ${pause.reason}`).join('; ')}`,
    `  changed        ${rail.updatedAt.toISOString()} by ${rail.updatedBy}`,
  ].join('\n');
}

async function readRails(url: string, command: string) {
  return withDatabaseSession({ connectionString: url, command, actAs: ROLE }, async (db) => ({
    rails: await railOverview(db),
    pauses: await activePauses(db),
  })).catch((error: unknown) => {
    throw databaseFailure(command, ROLE, error);
  });
}

export function registerRailCommand(program: Command): void {
  const rail = program
    .command('rail')
    .description(
      'per-rail controls every worker obeys: fleet-wide rate limit, ordered delivery per participant, circuit breaker',
    );

  rail
    .command('set <rail_type>')
    .summary('change a rail’s rate limit, ordering or circuit breaker (audited)')
    .description(
      `change the settings of one rail type as ${ROLE}, recorded in outbox_control_audit with the ` +
        'login, the server time, the reason and the old and new values. Options not given stay as they are',
    )
    .option('--max-per-second <n>', 'fleet-wide limit on items claimed per second (0 removes it)')
    .option(
      '--ordered',
      'deliver each participant’s items strictly in sequence_id order, one at a time',
    )
    .option('--unordered', 'undo --ordered (also lifts blocks behind FAILED heads)')
    .option(
      '--breaker-threshold <n>',
      'consecutive TIMEOUT / NETWORK_ERROR / HTTP_5xx outcomes that open the breaker (0 removes it)',
    )
    .option('--breaker-cooldown-seconds <s>', 'first cool-down of an open breaker (default 30)')
    .option(
      '--breaker-max-cooldown-seconds <s>',
      'cap of the cool-down, which doubles after each failed probe (default 600)',
    )
    .requiredOption('--reason <text>', 'why, for the audit trail')
    .option('--database-url <url>', DATABASE_URL_HELP)
    .action(async (railType: string, options: SetOptions) => {
      const change = changeFrom(railType, options);
      const url = requireDatabaseUrl(options.databaseUrl, 'rail set');
      const { rails, pauses } = await withDatabaseSession(
        { connectionString: url, command: 'rail set', actAs: ROLE },
        async (db) => {
          await setRailSettings(db, change);
          return { rails: await railOverview(db), pauses: await activePauses(db) };
        },
      ).catch((error: unknown) => {
        throw databaseFailure('rail set', ROLE, error);
      });
      const updated = rails.find((row) => row.railType === railType);
      if (updated) console.log(describeRail(updated, pauses));
    });

  rail
    .command('show [rail_type]')
    .summary('print the limit, ordering, breaker state and pauses of configured rails')
    .option('--json', 'print one JSON object')
    .option('--database-url <url>', DATABASE_URL_HELP)
    .action(
      async (railType: string | undefined, options: { json?: boolean; databaseUrl?: string }) => {
        const url = requireDatabaseUrl(options.databaseUrl, 'rail show');
        const { rails, pauses } = await readRails(url, 'rail show');
        const shown =
          railType === undefined ? rails : rails.filter((row) => row.railType === railType);
        if (options.json) {
          console.log(JSON.stringify({ rails: shown, pauses }));
          return;
        }
        if (railType !== undefined && shown.length === 0) {
          const paused = pauses.filter(
            (pause) =>
              pause.scope === 'all' || (pause.scope === 'rail' && pause.target === railType),
          );
          console.log(
            `rail ${railType}: no settings (no rate limit, unordered, no breaker)` +
              (paused.length > 0
                ? `; paused since ${paused[0]!.pausedAt.toISOString()}: ${paused[0]!.reason}`
                : '; not paused'),
          );
          return;
        }
        const lines = shown.map((row) => describeRail(row, pauses));
        if (lines.length === 0) lines.push('(no rail has settings)');
        if (railType === undefined) {
          lines.push(
            'pauses:',
            ...(pauses.length === 0
              ? ['  (none)']
              : pauses.map(
                  (pause) =>
                    `  ${pause.scope === 'all' ? 'all' : `${pause.scope} ${pause.target}`} since ${pause.pausedAt.toISOString()} by ${pause.pausedBy}: ${pause.reason}`,
                )),
          );
        }
        console.log(lines.join('\n'));
      },
    );
}
