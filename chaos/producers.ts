import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { enqueuePaymentOutboxBatch, type EnqueueRequest } from '../src/db/outbox.ts';

export const CHAOS_RAIL = 'bank';
const BATCH = 200;
const RETRY_PAUSE_MS = 250;

/**
 * Producers, one participant each, counting what PostgreSQL acknowledged: a producer's
 * count is the last sequence number it saw committed, and it never moves on until a batch
 * is acknowledged. A batch whose outcome is unknown (the connection died around the commit)
 * is sent again with the same keys and content, which the enqueue function answers with the
 * stored items, so the count stays exact across backend terminations and restarts.
 */
export interface Producers {
  /** Enqueues `count` items spread over the producers, batch by batch. */
  backlog(count: number): Promise<void>;
  /** Starts adding `perSecond` items until stop(). */
  startTrickle(perSecond: number): void;
  stop(): Promise<void>;
  /** Acknowledged items per participant id. */
  acknowledged(): Map<string, number>;
  /** Enqueue calls that failed and were sent again. */
  retries(): number;
  /** Batches still unacknowledged when the deadline passed (a run with any is invalid). */
  abandoned(): number;
  keyOf(participant: string, sequence: number): string;
  close(): Promise<void>;
}

export function startProducers(options: {
  url: string;
  count: number;
  runId: string;
  /** No batch is retried after this time (ms since the epoch). */
  deadline: number;
}): Producers {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.count,
    connectionTimeoutMillis: 5_000,
  });
  // Connections are cut on purpose (PostgreSQL restarts): a dead idle client is replaced.
  pool.on('error', () => undefined);
  const participants = Array.from({ length: options.count }, (_, index) => `chaos-p${index + 1}`);
  const acked = new Map(participants.map((participant) => [participant, 0]));
  let retried = 0;
  let abandonedBatches = 0;
  let stopping = false;
  let trickle: Promise<void> | undefined;
  const keyOf = (participant: string, sequence: number) =>
    `${options.runId}-${participant}-${sequence}`;

  const request = (participant: string, sequence: number): EnqueueRequest => ({
    instructionId: keyOf(participant, sequence),
    participantId: participant,
    idempotencyKey: keyOf(participant, sequence),
    railType: CHAOS_RAIL,
    payload: { amount: { value: String(sequence), currency: 'EUR' }, sequence },
  });

  /** Sends the next `size` items of one participant until acknowledged or the deadline. */
  async function enqueueNext(participant: string, size: number): Promise<boolean> {
    const first = (acked.get(participant) ?? 0) + 1;
    const batch = Array.from({ length: size }, (_, index) => request(participant, first + index));
    for (;;) {
      try {
        await enqueuePaymentOutboxBatch(pool, batch);
        acked.set(participant, first + size - 1);
        return true;
      } catch {
        if (Date.now() > options.deadline) {
          abandonedBatches += 1;
          return false;
        }
        retried += 1;
        await sleep(RETRY_PAUSE_MS);
      }
    }
  }

  return {
    async backlog(count) {
      await Promise.all(
        participants.map(async (participant, index) => {
          let left =
            Math.floor(count / participants.length) + (index < count % participants.length ? 1 : 0);
          while (left > 0) {
            const size = Math.min(BATCH, left);
            if (!(await enqueueNext(participant, size))) return;
            left -= size;
          }
        }),
      );
    },
    startTrickle(perSecond) {
      if (perSecond <= 0) return;
      const tickMs = 100;
      trickle = (async () => {
        let owed = 0;
        let turn = 0;
        while (!stopping) {
          const started = Date.now();
          owed += (perSecond * tickMs) / 1000;
          const whole = Math.floor(owed);
          owed -= whole;
          // Spread over the participants, round robin, each getting a whole batch.
          const shares = new Map<string, number>();
          for (let index = 0; index < whole; index += 1) {
            const participant = participants[(turn + index) % participants.length]!;
            shares.set(participant, (shares.get(participant) ?? 0) + 1);
          }
          turn += whole;
          const results = await Promise.all(
            [...shares].map(([participant, size]) => enqueueNext(participant, size)),
          );
          if (results.includes(false)) return;
          await sleep(Math.max(0, tickMs - (Date.now() - started)));
        }
      })();
    },
    async stop() {
      stopping = true;
      await trickle;
    },
    acknowledged: () => new Map(acked),
    retries: () => retried,
    abandoned: () => abandonedBatches,
    keyOf,
    close: () => pool.end(),
  };
}
