import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { enqueuePaymentOutbox } from '../db/outbox.ts';
import { createPool, logPoolTransitions } from '../db/pool.ts';

export interface DemoProducerOptions {
  /** Login role allowed to act as symphony_ingest. */
  connectionString: string;
  itemsPerSecond: number;
  railType: string;
  logger: Logger;
}

const PARTICIPANTS = ['bank-za-001', 'momo-ke-002', 'bank-ng-003', 'momo-gh-004', 'bank-zm-005'];
const TICKS_PER_SECOND = 10;

/**
 * A steady flow of payment instructions through enqueue_payment_outbox, acting as
 * symphony_ingest exactly as an upstream service would (its login's sessions start as that
 * role): it can enqueue and nothing else.
 */
export function startDemoProducer(options: DemoProducerOptions): { stop(): Promise<void> } {
  const pool = createPool({
    connectionString: options.connectionString,
    applicationName: 'symphony-relay demo producer',
    max: 2,
  });
  logPoolTransitions([pool], options.logger, 'demo producer');
  let owed = 0;
  let inFlight: Promise<void> | undefined;
  let stopped = false;
  let sequence = 0;
  const timer = setInterval(() => {
    owed += options.itemsPerSecond / TICKS_PER_SECOND;
    if (inFlight) return;
    const count = Math.floor(owed);
    owed -= count;
    inFlight = enqueueMany(count)
      .catch((error: Error) =>
        options.logger.error(
          { event: 'demo_enqueue_failed', err: { message: error.message } },
          'demo enqueue failed',
        ),
      )
      .finally(() => {
        inFlight = undefined;
      });
  }, 1000 / TICKS_PER_SECOND);

  async function enqueueMany(count: number): Promise<void> {
    for (let i = 0; i < count && !stopped; i += 1) {
      sequence += 1;
      const participantId = PARTICIPANTS[sequence % PARTICIPANTS.length] ?? 'bank-za-001';
      // One key per instruction, unique across runs on a kept data directory: one key is
      // one payment, so a restarted demo must not reuse the last run's keys.
      const instruction = randomUUID();
      await enqueuePaymentOutbox(pool, {
        instructionId: `demo-${instruction}`,
        participantId,
        idempotencyKey: `demo-key-${instruction}`,
        railType: options.railType,
        payload: {
          amount: {
            value: (Math.floor(Math.random() * 1_000_000) / 100).toFixed(2),
            currency: 'ZAR',
          },
          debtor: `acct-${participantId}`,
          creditor: `acct-${sequence % 97}`,
          purpose: 'demo payment',
        },
      });
    }
  }

  return {
    async stop() {
      // The pool ends only after the enqueue in flight: ending it first made that enqueue
      // fail with "Cannot use a pool after calling end on the pool".
      stopped = true;
      clearInterval(timer);
      await inFlight;
      await pool.end();
    },
  };
}
