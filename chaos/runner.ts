import { randomBytes } from 'node:crypto';
import os from 'node:os';
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { httpRailsJson } from './rails.ts';
import { openChaosDatabase } from './database.ts';
import { emptyFaultLog, injectFaults } from './faults.ts';
import type { ChaosConfig } from './options.ts';
import { startProducers } from './producers.ts';
import { seededRandom } from './random.ts';
import { startRailRecorder } from './rail-recorder.ts';
import { verifyRun } from './verifier.ts';
import { CHAOS_RELAYER_SETTINGS, Fleet } from './workers.ts';

export interface ChaosReport {
  ok: boolean;
  /** Invariants: every one must be true. */
  checks: Record<string, boolean>;
  config: ChaosConfig & { adminUrl?: string };
  figures: Record<string, unknown>;
  faults: Record<string, unknown>;
  timings: Record<string, number | null>;
  environment: Record<string, unknown>;
}

/** The share of deliveries the rail answers with a 5xx. */
const SERVER_ERROR_RATE = 0.05;
const HANG_MS = 4_000;

async function queueLeft(ownerUrl: string): Promise<number> {
  const client = new pg.Client({ connectionString: ownerUrl, connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM payment_outbox_pending',
    );
    return rows[0]?.n ?? -1;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * One chaos run: a fresh database, a recording rail, producers, a fleet of relayer
 * processes and the faults for `durationSeconds`; then the drain, a graceful SIGTERM to the
 * fleet and the verification. `progress` gets one line per phase.
 */
export async function runChaos(
  config: ChaosConfig,
  progress: (line: string) => void = () => undefined,
): Promise<ChaosReport> {
  const random = seededRandom(config.seed);
  const runId = `chaos-${randomBytes(3).toString('hex')}`;
  const startedAt = Date.now();
  const loadBefore = os.loadavg();
  progress(`preparing PostgreSQL (${config.adminUrl ? 'from --admin-url' : 'embedded'})`);
  const db = await openChaosDatabase(config);
  const rail = await startRailRecorder({ serverErrorRate: SERVER_ERROR_RATE, random });
  const fleet = new Fleet(
    {
      ...CHAOS_RELAYER_SETTINGS,
      DATABASE_URL: db.relayLogin.url,
      SYMPHONY_RAILS: httpRailsJson(rail.url),
    },
    config.workers,
  );
  const hardDeadline =
    startedAt + (config.durationSeconds + config.drainTimeoutSeconds + 600) * 1000;
  const producers = startProducers({
    url: db.producerUrl,
    count: config.producers,
    runId,
    deadline: hardDeadline,
  });
  const faults = emptyFaultLog();
  try {
    progress(`enqueueing a backlog of ${config.items} items`);
    await producers.backlog(config.items);
    const backlogDone = Date.now();
    progress(`starting ${config.workers} relayer processes`);
    await fleet.start();
    const faultsStart = Date.now();
    const end = faultsStart + config.durationSeconds * 1000;
    progress(`faults and ${config.rate} items/s for ${config.durationSeconds} s`);
    producers.startTrickle(config.rate);
    await injectFaults(
      {
        end,
        random,
        killEveryMs: [2_000, 5_000],
        gracefulEvery: 5,
        terminateEveryMs: [6_000, 12_000],
        pgRestartAt: faultsStart + config.durationSeconds * 400,
        hangAt: faultsStart + config.durationSeconds * 250,
        hangMs: HANG_MS,
      },
      { db, fleet, rail },
      faults,
    );
    await sleep(Math.max(0, end - Date.now()));
    await producers.stop();
    const faultsEnd = Date.now();
    progress('faults stopped; draining the queue');
    await fleet.settle();
    const drainStart = Date.now();
    const drainEnd = drainStart + config.drainTimeoutSeconds * 1000;
    let left = -1;
    while (Date.now() < drainEnd) {
      left = await queueLeft(db.ownerUrl).catch(() => -1);
      if (left === 0) break;
      await sleep(500);
    }
    const drainMs = Date.now() - drainStart;
    progress(
      `drain ${left === 0 ? 'complete' : `incomplete (${left} pending)`}; SIGTERM to the fleet`,
    );
    const finalExits = await fleet.stopAll();
    const unprompted = [...fleet.unprompted];
    progress('verifying');
    const verdict = await verifyRun(db.ownerUrl, {
      acknowledged: producers.acknowledged(),
      keyOf: producers.keyOf,
      abandonedBatches: producers.abandoned(),
      deliveries: rail.deliveries,
      faults,
      unpromptedExits: unprompted,
      finalExits,
      workers: config.workers,
    });
    const checks = {
      ...verdict.checks,
      faultsCarriedOut: faults.errors.length === 0,
      pgRestartRecovered:
        faults.pgRestart !== undefined
          ? faults.pgRestart.recoveryMs !== null
          : faults.pgRestartSkipped !== undefined,
    };
    const { adminUrl: _hidden, pgRestartCommand: _command, ...shownConfig } = config;
    return {
      ok: Object.values(checks).every(Boolean),
      checks,
      config: { ...shownConfig, ...(config.adminUrl ? { adminUrl: '(given, not shown)' } : {}) },
      figures: { ...verdict.figures, producerRetries: producers.retries() },
      faults: {
        sigkills: faults.kills.length,
        leasesHeldByKilledWorkers: faults.kills.reduce(
          (sum, kill) => sum + kill.leasesHeld.length,
          0,
        ),
        gracefulRestarts: faults.gracefulRestarts.length,
        restartsSameId: faults.restartsSameId,
        restartsNewId: faults.restartsNewId,
        terminationRounds: faults.terminationRounds,
        backendsTerminated: faults.backendsTerminated,
        pgRestart: faults.pgRestart
          ? {
              downMs: faults.pgRestart.readyAt - faults.pgRestart.stoppedAt,
              recoveryMs: faults.pgRestart.recoveryMs,
              leasesHeld: faults.pgRestart.leasesHeld.length,
            }
          : { skipped: faults.pgRestartSkipped ?? 'the run ended first' },
        railHang: faults.hang ? { ms: faults.hang.ms } : null,
        serverErrorRate: SERVER_ERROR_RATE,
        errors: faults.errors,
      },
      timings: {
        backlogMs: backlogDone - startedAt,
        faultsMs: faultsEnd - faultsStart,
        drainMs,
        totalMs: Date.now() - startedAt,
      },
      environment: {
        postgres: db.source,
        node: process.version,
        cpus: os.cpus().length,
        loadAverageAtStart: loadBefore.map((value) => Number(value.toFixed(2))),
        loadAverageAtEnd: os.loadavg().map((value) => Number(value.toFixed(2))),
      },
    };
  } catch (error) {
    const tails = fleet.tails().join('\n').slice(-4_000);
    throw new Error(`${(error as Error).message}${tails ? `\nworker output:\n${tails}` : ''}`, {
      cause: error,
    });
  } finally {
    await producers.stop().catch(() => undefined);
    await fleet.killAll();
    await producers.close().catch(() => undefined);
    await rail.close();
    await db.close().catch((error: Error) => progress(`cleanup: ${error.message}`));
  }
}
