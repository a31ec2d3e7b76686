import { parseArgs } from 'node:util';

/** What one chaos run does; every figure is bounded so a run always ends by itself. */
export interface ChaosConfig {
  /** Items every producer together enqueues before the workers start (the backlog). */
  items: number;
  /** Items per second the producers add while the faults run (the trickle). */
  rate: number;
  producers: number;
  workers: number;
  /** How long the producers and the faults run, in seconds. */
  durationSeconds: number;
  /** Longest wait for the queue to drain after the faults stop, in seconds. */
  drainTimeoutSeconds: number;
  /** Seed of the fault schedule (which worker, when), so a failing run can be repeated. */
  seed: number;
  /** A superuser URL of an existing PostgreSQL 18 instead of an embedded one. */
  adminUrl?: string;
  /** With adminUrl: a shell command that restarts that PostgreSQL (the restart fault). */
  pgRestartCommand?: string;
}

export const FULL_CONFIG: ChaosConfig = {
  items: 10_000,
  rate: 200,
  producers: 4,
  workers: 4,
  durationSeconds: 300,
  drainTimeoutSeconds: 600,
  seed: 1,
};

interface Bound {
  min: number;
  max: number;
  what: string;
}

const BOUNDS: Record<
  'items' | 'rate' | 'producers' | 'workers' | 'duration' | 'drain-timeout' | 'seed',
  Bound
> = {
  items: { min: 0, max: 1_000_000, what: 'items enqueued before the workers start' },
  rate: { min: 0, max: 5_000, what: 'items per second added during the run' },
  producers: { min: 1, max: 32, what: 'producers (participants)' },
  workers: { min: 1, max: 32, what: 'relayer processes' },
  duration: { min: 5, max: 3_600, what: 'seconds of faults' },
  'drain-timeout': { min: 10, max: 3_600, what: 'seconds allowed for the drain' },
  seed: { min: 0, max: 2 ** 31 - 1, what: 'seed of the fault schedule' },
};

export const USAGE = `usage: npm run chaos -- [--items N] [--rate N] [--workers N] [--producers N]
                       [--duration SECONDS] [--drain-timeout SECONDS] [--seed N]
                       [--admin-url postgres://… --pg-restart-command 'CMD']
defaults: the full configuration (${FULL_CONFIG.items} items, ${FULL_CONFIG.workers} workers, ${FULL_CONFIG.durationSeconds} s, ${FULL_CONFIG.rate} items/s)`;

export class OptionsError extends Error {}

/** Parses `npm run chaos` arguments; a bad value is one line naming the option and the range. */
export function parseChaosArgs(argv: string[]): ChaosConfig | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        items: { type: 'string' },
        rate: { type: 'string' },
        producers: { type: 'string' },
        workers: { type: 'string' },
        duration: { type: 'string' },
        'drain-timeout': { type: 'string' },
        seed: { type: 'string' },
        'admin-url': { type: 'string' },
        'pg-restart-command': { type: 'string' },
        help: { type: 'boolean' },
      },
    });
  } catch (error) {
    throw new OptionsError(`${(error as Error).message} (see --help)`);
  }
  const values = parsed.values;
  if (values.help) return 'help';
  const number = (name: keyof typeof BOUNDS, fallback: number): number => {
    const text = values[name];
    if (text === undefined) return fallback;
    const bound = BOUNDS[name];
    const value = Number(text);
    if (!/^\d+$/.test(text) || value < bound.min || value > bound.max) {
      throw new OptionsError(
        `--${name} "${text}" is invalid: expected a whole number from ${bound.min} to ${bound.max} (${bound.what})`,
      );
    }
    return value;
  };
  const adminUrl = values['admin-url'];
  if (adminUrl !== undefined && !/^postgres(ql)?:\/\//.test(adminUrl)) {
    throw new OptionsError(
      '--admin-url is invalid (value not shown: it may contain a password): expected a postgres:// URL of a superuser',
    );
  }
  const pgRestartCommand = values['pg-restart-command'];
  if (pgRestartCommand !== undefined && adminUrl === undefined) {
    throw new OptionsError(
      '--pg-restart-command needs --admin-url: the embedded PostgreSQL is restarted by the suite itself',
    );
  }
  return {
    items: number('items', FULL_CONFIG.items),
    rate: number('rate', FULL_CONFIG.rate),
    producers: number('producers', FULL_CONFIG.producers),
    workers: number('workers', FULL_CONFIG.workers),
    durationSeconds: number('duration', FULL_CONFIG.durationSeconds),
    drainTimeoutSeconds: number('drain-timeout', FULL_CONFIG.drainTimeoutSeconds),
    seed: number('seed', FULL_CONFIG.seed),
    ...(adminUrl === undefined ? {} : { adminUrl }),
    ...(pgRestartCommand === undefined ? {} : { pgRestartCommand }),
  };
}
