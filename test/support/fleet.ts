/**
 * Several `symphony-relay run` processes against one database and one loopback http rail,
 * each with its own metrics port: what the fleet-wide control proofs need.
 */
import { expect } from 'vitest';
import { freePort, waitUntil } from './processes.ts';
import {
  httpRails,
  spawnRelayer,
  waitForLog,
  type RelayerDatabase,
  type RelayerProcess,
} from './relayer.ts';

export interface FleetWorker {
  id: string;
  process: RelayerProcess;
  metricsUrl: string;
}

export interface Fleet {
  workers: FleetWorker[];
  /** Each worker's value of one sample (`name{labels}`), e.g. 'symphony_relay_queue_due'. */
  sample(series: string): Promise<number[]>;
  /** SIGTERM to every worker; asserts they all exit 0. */
  stop(): Promise<void>;
}

export async function startFleet(
  target: RelayerDatabase,
  railUrl: string,
  count: number,
  settings: Record<string, string> = {},
): Promise<Fleet> {
  const workers: FleetWorker[] = [];
  for (let index = 0; index < count; index += 1) {
    const port = await freePort();
    const id = `fleet-${index + 1}`;
    workers.push({
      id,
      metricsUrl: `http://127.0.0.1:${port}/metrics`,
      process: spawnRelayer(
        target.env({
          SYMPHONY_WORKER_ID: id,
          SYMPHONY_RAILS: httpRails(railUrl),
          SYMPHONY_HTTP_PORT: String(port),
          LOG_LEVEL: 'info',
          ...settings,
        }),
      ),
    });
  }
  const stop = async () => {
    for (const worker of workers) worker.process.child.kill('SIGTERM');
    const exits = await Promise.all(workers.map((worker) => worker.process.exited));
    expect(exits.map((exit) => exit.code)).toEqual(workers.map(() => 0));
  };
  try {
    await Promise.all(
      workers.map((worker) => waitForLog(worker.process, '"event":"worker_started"')),
    );
  } catch (error) {
    for (const worker of workers) worker.process.child.kill('SIGKILL');
    throw error;
  }
  return {
    workers,
    stop,
    sample: (series) =>
      Promise.all(
        workers.map(async (worker) => {
          const text = await (await fetch(worker.metricsUrl)).text();
          const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
          if (!line) throw new Error(`${worker.id} exports no sample ${series}`);
          return Number(line.slice(series.length + 1));
        }),
      ),
  };
}

/** Waits until every worker reports `series` satisfying `accept`. */
export async function waitForFleetSample(
  fleet: Fleet,
  series: string,
  accept: (value: number) => boolean,
): Promise<number[]> {
  return waitUntil(
    async () => {
      const values = await fleet.sample(series);
      return values.every(accept) ? values : undefined;
    },
    { description: `every worker reporting ${series} as wanted`, attempts: 240 },
  );
}
