import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { ChaosDatabase } from './database.ts';
import { between } from './random.ts';
import type { RailRecorder } from './rail-recorder.ts';
import type { Fleet, WorkerExit } from './workers.ts';

/** Every fault of a run, as it happened; the verifier and the report read this. */
export interface FaultLog {
  kills: { id: string; at: number; leasesHeld: string[] }[];
  /** Workers stopped with SIGTERM mid-run and restarted; their exit codes should all be 0. */
  gracefulRestarts: WorkerExit[];
  restartsSameId: number;
  restartsNewId: number;
  terminationRounds: number;
  backendsTerminated: number;
  pgRestart?: {
    stoppedAt: number;
    readyAt: number;
    /** Outbox ids leased to any worker just before the stop. */
    leasesHeld: string[];
    /** From ready to the first outcome recorded after it; null if none came. */
    recoveryMs: number | null;
  };
  pgRestartSkipped?: string;
  hang?: { at: number; ms: number };
  /** Faults that could not be carried out (a snapshot query failed, say), with why. */
  errors: string[];
}

/** One fault at a time touches the database server or the fleet's membership. */
class Lock {
  private tail: Promise<void> = Promise.resolve();
  async run<T>(work: () => Promise<T>): Promise<T> {
    const previous = this.tail;
    let release: () => void = () => undefined;
    this.tail = new Promise<void>((resolve) => (release = resolve));
    await previous;
    try {
      return await work();
    } finally {
      release();
    }
  }
}

async function withOwner<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Sleeps `ms`, or less when the run's end comes first; false once the end has passed. */
async function pause(ms: number, end: number): Promise<boolean> {
  const left = end - Date.now();
  if (left <= 0) return false;
  await sleep(Math.min(ms, left));
  return Date.now() < end;
}

export interface FaultPlan {
  end: number;
  random: () => number;
  /** ms between worker kills, drawn uniformly. */
  killEveryMs: [number, number];
  /** Every n-th stop is a graceful SIGTERM instead of SIGKILL. */
  gracefulEvery: number;
  terminateEveryMs: [number, number];
  pgRestartAt: number;
  hangAt: number;
  hangMs: number;
}

/**
 * Runs every fault loop until `plan.end`; each loop is bounded by the end time and by a
 * count derived from it, and the returned promise settles when they all have stopped.
 */
export async function injectFaults(
  plan: FaultPlan,
  parts: { db: ChaosDatabase; fleet: Fleet; rail: RailRecorder },
  log: FaultLog,
): Promise<void> {
  const lock = new Lock();
  const { db, fleet, rail } = parts;
  const seconds = Math.ceil((plan.end - Date.now()) / 1000);
  const failed = (what: string) => (error: unknown) => {
    log.errors.push(`${what}: ${error instanceof Error ? error.message : String(error)}`);
  };

  const killLoop = async () => {
    const starting: Promise<void>[] = [];
    const maxKills = Math.ceil((seconds * 1000) / plan.killEveryMs[0]);
    for (let stop = 1; stop <= maxKills; stop += 1) {
      if (!(await pause(between(plan.random, ...plan.killEveryMs), plan.end))) return;
      await lock
        .run(async () => {
          const slot = Math.floor(plan.random() * fleet.size());
          const id = fleet.idOf(slot);
          if (!id) return;
          // The third stop is the first graceful one, so a short run has one too.
          // A worker still starting has no SIGTERM handler yet: it gets SIGKILL instead.
          const graceful =
            stop % plan.gracefulEvery === 3 % plan.gracefulEvery && fleet.hasStarted(slot);
          const exit = await fleet.signal(slot, graceful ? 'SIGTERM' : 'SIGKILL');
          if (graceful) {
            if (exit) log.gracefulRestarts.push(exit);
          } else {
            const at = Date.now();
            // The process is gone, so these are exactly the leases it held when it died.
            const leasesHeld = await withOwner(db.ownerUrl, async (client) => {
              const { rows } = await client.query<{ outbox_id: string }>(
                `SELECT outbox_id::text FROM payment_outbox_pending
                  WHERE claimed_by = $1 AND lease_token IS NOT NULL`,
                [id],
              );
              return rows.map((row) => row.outbox_id);
            });
            log.kills.push({ id, at, leasesHeld });
          }
          // Alternate: the first restart reuses the id, the second takes a new one, and so on.
          const newId = stop % 2 === 0;
          if (newId) log.restartsNewId += 1;
          else log.restartsSameId += 1;
          // Not awaited under the lock: the next kill comes 2-5 s later whether or not this
          // worker has finished starting (on a loaded machine that takes several seconds).
          starting.push(fleet.restart(slot, newId).catch(failed('worker restart')));
        })
        .catch(failed('worker kill'));
    }
    await Promise.all(starting);
  };

  const terminateLoop = async () => {
    const maxRounds = Math.ceil((seconds * 1000) / plan.terminateEveryMs[0]);
    let missed = false;
    for (let round = 0; round < maxRounds * 2; round += 1) {
      // A round that found no relayer backend (every worker was restarting) is tried again
      // soon rather than after the usual 6-12 s.
      // The first round comes after half the usual wait, so a short run has one too.
      const usual = between(plan.random, ...plan.terminateEveryMs);
      const wait = missed ? 500 : round === 0 ? usual / 2 : usual;
      if (!(await pause(wait, plan.end))) return;
      await lock
        .run(() =>
          withOwner(db.ownerUrl, async (client) => {
            const { rows } = await client.query<{ terminated: number }>(
              `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS terminated
                 FROM pg_stat_activity WHERE usename = $1`,
              [db.relayLogin.name],
            );
            const terminated = rows[0]?.terminated ?? 0;
            missed = terminated === 0;
            if (missed) return;
            log.terminationRounds += 1;
            log.backendsTerminated += terminated;
          }),
        )
        .catch(failed('pg_terminate_backend round'));
    }
  };

  const pgRestart = async () => {
    if (!(await pause(plan.pgRestartAt - Date.now(), plan.end))) return;
    const restart = db.restart;
    if (!restart) {
      log.pgRestartSkipped = db.restartUnavailable ?? 'no restart available';
      return;
    }
    const readyAt = await lock
      .run(async () => {
        const leasesHeld = await withOwner(db.ownerUrl, async (client) => {
          const { rows } = await client.query<{ outbox_id: string }>(
            `SELECT outbox_id::text FROM payment_outbox_pending WHERE lease_token IS NOT NULL`,
          );
          return rows.map((row) => row.outbox_id);
        });
        const stoppedAt = Date.now();
        await restart();
        const ready = Date.now();
        log.pgRestart = { stoppedAt, readyAt: ready, leasesHeld, recoveryMs: null };
        return ready;
      })
      .catch(failed('PostgreSQL restart'));
    if (readyAt === undefined || !log.pgRestart) return;
    // Recovery: the first outcome the fleet records after the server is back (bounded).
    for (let probe = 0; probe < 1_200; probe += 1) {
      const recorded = await withOwner(db.ownerUrl, async (client) => {
        const { rows } = await client.query<{ first: Date | null }>(
          `SELECT min(created_at) AS first FROM payment_outbox_attempts
            WHERE created_at >= to_timestamp($1 / 1000.0)
              AND state IN ('DISPATCHED', 'RETRYABLE', 'FAILED')`,
          [readyAt],
        );
        return rows[0]?.first ?? null;
      }).catch(() => null);
      if (recorded) {
        log.pgRestart.recoveryMs = Math.max(0, recorded.getTime() - readyAt);
        return;
      }
      await sleep(100);
    }
  };

  const hang = async () => {
    if (!(await pause(plan.hangAt - Date.now(), plan.end))) return;
    rail.hang(plan.hangMs);
    log.hang = { at: Date.now(), ms: plan.hangMs };
  };

  await Promise.all([killLoop(), terminateLoop(), pgRestart(), hang()]);
}

export function emptyFaultLog(): FaultLog {
  return {
    kills: [],
    gracefulRestarts: [],
    restartsSameId: 0,
    restartsNewId: 0,
    terminationRounds: 0,
    backendsTerminated: 0,
    errors: [],
  };
}
