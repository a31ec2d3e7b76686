/**
 * Outbox fixtures shared by the schema proofs. Setup that the SQL functions cannot express
 * (bulk rows, time travel, direct ledger reads) runs as the owner; everything the product
 * does goes through src/db/outbox.ts.
 */
import type pg from 'pg';
import { afterAll, beforeEach } from 'vitest';
import { claimOutboxBatch, type ClaimedItem } from '../../src/db/outbox.ts';
import type { Queryable } from '../../src/db/pool.ts';
import { freshDatabase, type TestDatabase } from './database.ts';

export interface AttemptRow {
  outbox_id: string;
  instruction_id: string;
  attempt_no: number;
  state: string;
  worker_id: string | null;
  rail_reference: string | null;
  error_code: string | null;
  error_message: string | null;
  claimed_at: Date;
  completed_at: Date | null;
}

export interface PendingRow {
  outbox_id: string;
  participant_id: string;
  sequence_id: string;
  attempt_count: number;
  next_attempt_at: Date;
  claimed_by: string | null;
  lease_token: string | null;
  lease_expires_at: Date | null;
}

let batchCounter = 0;

/** A prefix no other fixture call in this process uses, so tests never collide on ids. */
export function uniquePrefix(label: string): string {
  batchCounter += 1;
  return `${label}-${process.pid}-${batchCounter}`;
}

/**
 * Enqueues `count` items through enqueue_payment_outbox in one statement (fast for
 * thousands), spread round-robin over `participants`. Returns their outbox ids.
 */
export async function enqueueItems(
  db: Queryable,
  count: number,
  options: { prefix?: string; participants?: string[]; railType?: string } = {},
): Promise<string[]> {
  const prefix = options.prefix ?? uniquePrefix('item');
  const participants = options.participants ?? [`${prefix}-participant`];
  const { rows } = await db.query<{ outbox_id: string }>(
    `SELECT e.outbox_id
       FROM generate_series(1, $1::int) AS g(n)
      CROSS JOIN LATERAL public.enqueue_payment_outbox(
        $2 || '-' || g.n,
        ($3::text[])[1 + (g.n - 1) % cardinality($3::text[])],
        $2 || '-key-' || g.n,
        $4,
        jsonb_build_object('n', g.n)
      ) AS e
      ORDER BY g.n`,
    [count, prefix, participants, options.railType ?? 'sandbox'],
  );
  return rows.map((row) => row.outbox_id);
}

/** Enqueues `count` items and claims them for `workerId`; the queue must hold no other due items. */
export async function enqueueAndClaim(
  db: Queryable,
  count: number,
  options: { workerId: string; leaseSeconds?: number; prefix?: string },
): Promise<ClaimedItem[]> {
  const ids = await enqueueItems(db, count, { prefix: options.prefix });
  const claimed = await claimOutboxBatch(db, {
    batchSize: count,
    workerId: options.workerId,
    leaseSeconds: options.leaseSeconds ?? 60,
    railTypes: ['sandbox'],
  });
  const wanted = new Set(ids);
  const mine = claimed.filter((item) => wanted.has(item.outboxId));
  if (mine.length !== count) {
    throw new Error(`fixture expected to claim the ${count} new items, claimed ${mine.length}`);
  }
  return mine;
}

/**
 * Makes live leases look expired, as if their worker had died a second ago. The row keeps
 * its lease (claim never takes it) until repair_expired_leases requeues it.
 */
export async function expireLeases(owner: Queryable, outboxIds: readonly string[]): Promise<void> {
  await owner.query(
    `UPDATE public.payment_outbox_pending
        SET lease_expires_at = now() - interval '1 second'
      WHERE outbox_id = ANY($1::uuid[]) AND lease_token IS NOT NULL`,
    [outboxIds],
  );
}

/**
 * Queues `count` unleased items of one rail straight into the item record and the queue, in
 * one statement (owner only): 100,000 in a second or two, where the enqueue functions take
 * far longer. Each is due `secondsFromNow` from now (negative: due that long ago).
 */
export async function queueBulk(
  owner: Queryable,
  count: number,
  options: { railType: string; secondsFromNow: number; prefix?: string },
): Promise<void> {
  await owner.query(
    `WITH items AS (
       INSERT INTO public.payment_outbox_items
         (outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
          payload, payload_sha256)
       SELECT uuidv7(), $1 || '-' || g, $1 || '-participant-' || (g % 50), g, $1 || '-key-' || g,
              $2, '{}'::jsonb, repeat('0', 64)
         FROM generate_series(1, $3::int) AS g
       RETURNING outbox_id, participant_id, sequence_id, rail_type
     )
     INSERT INTO public.payment_outbox_pending
       (outbox_id, participant_id, sequence_id, rail_type, next_attempt_at)
     SELECT outbox_id, participant_id, sequence_id, rail_type, now() + $4 * interval '1 second'
       FROM items`,
    [options.prefix ?? uniquePrefix('bulk'), options.railType, count, options.secondsFromNow],
  );
}

/** Makes scheduled (unleased) items due now, as if their retry delay had passed. */
export async function makeDue(owner: Queryable, outboxIds: readonly string[]): Promise<void> {
  await owner.query(
    `UPDATE public.payment_outbox_pending SET next_attempt_at = now() - interval '1 second'
      WHERE outbox_id = ANY($1::uuid[])`,
    [outboxIds],
  );
}

/** Appends `count` RETRYABLE attempts (numbers 1..count) as if the item had been tried before. */
export async function seedPriorAttempts(
  owner: Queryable,
  outboxId: string,
  count: number,
): Promise<void> {
  await owner.query(
    `INSERT INTO public.payment_outbox_attempts (outbox_id, attempt_no, state, worker_id)
     SELECT p.outbox_id, g.n, 'RETRYABLE', 'fixture'
       FROM public.payment_outbox_pending p CROSS JOIN generate_series(1, $2::int) AS g(n)
      WHERE p.outbox_id = $1`,
    [outboxId, count],
  );
  await owner.query(
    'UPDATE public.payment_outbox_pending SET attempt_count = $2 WHERE outbox_id = $1',
    [outboxId, count],
  );
}

export async function readAttempts(
  owner: Queryable,
  outboxIds: readonly string[],
): Promise<AttemptRow[]> {
  const { rows } = await owner.query<AttemptRow>(
    `SELECT a.outbox_id, i.instruction_id, a.attempt_no, a.state::text AS state, a.worker_id,
            a.rail_reference, a.error_code, a.error_message, a.claimed_at, a.completed_at
       FROM public.payment_outbox_attempts a
       JOIN public.payment_outbox_items i ON i.outbox_id = a.outbox_id
      WHERE a.outbox_id = ANY($1::uuid[])
      ORDER BY a.outbox_id, a.attempt_no`,
    [outboxIds],
  );
  return rows;
}

export async function readPending(
  owner: Queryable,
  outboxId: string,
): Promise<PendingRow | undefined> {
  const { rows } = await owner.query<PendingRow>(
    `SELECT outbox_id, participant_id, sequence_id, attempt_count, next_attempt_at,
            claimed_by, lease_token, lease_expires_at
       FROM public.payment_outbox_pending WHERE outbox_id = $1`,
    [outboxId],
  );
  return rows[0];
}

/** Empties the queue (attempts are append-only and stay; tests use fresh ids). */
export async function emptyQueue(owner: Queryable): Promise<void> {
  await owner.query('TRUNCATE public.payment_outbox_pending, public.participant_outbox_sequences');
}

/** `count` separate owner connections, for proofs that need real concurrency. */
export async function connectMany(db: TestDatabase, count: number): Promise<pg.Client[]> {
  return Promise.all(Array.from({ length: count }, () => db.connect()));
}

export async function closeAll(clients: readonly pg.Client[]): Promise<void> {
  await Promise.all(clients.map((client) => client.end()));
}

export interface OutboxTestBed {
  db: TestDatabase;
  /** Owner connections, open for the whole file, for proofs that need real concurrency. */
  clients: readonly pg.Client[];
  /** `clients[index]`, failing loudly when the bed was set up with fewer connections. */
  client(index: number): pg.Client;
}

/**
 * The setup the outbox proofs share: the file's own database, `connections` owner clients
 * closed after the file, and (when asked) an empty queue before every test so counts and
 * "nothing else is due" assumptions hold. Call it once at the top level of a test file.
 */
export async function outboxTestBed(
  options: { connections?: number; emptyQueueBeforeEach?: boolean } = {},
): Promise<OutboxTestBed> {
  const db = await freshDatabase();
  const clients = await connectMany(db, options.connections ?? 0);
  afterAll(() => closeAll(clients));
  if (options.emptyQueueBeforeEach) beforeEach(() => emptyQueue(db.owner));
  return {
    db,
    clients,
    client(index) {
      const found = clients[index];
      if (!found) {
        throw new Error(
          `outboxTestBed has ${clients.length} connections, no client ${index}: raise \`connections\``,
        );
      }
      return found;
    },
  };
}

/** Whole seconds between two timestamps the database produced in one transaction. */
export function secondsBetween(earlier: Date, later: Date): number {
  return (later.getTime() - earlier.getTime()) / 1000;
}

/** The default of outbox_limits.retry_ceiling (0019). */
export const DEFAULT_RETRY_CEILING = 20;

/**
 * Sets the operator's retry ceiling as the owner (the only way besides set_outbox_limit:
 * session settings no longer count). Tests restore DEFAULT_RETRY_CEILING in a finally.
 */
export async function setRetryCeiling(owner: Queryable, ceiling: number): Promise<void> {
  await owner.query('UPDATE public.outbox_limits SET retry_ceiling = $1', [ceiling]);
}
