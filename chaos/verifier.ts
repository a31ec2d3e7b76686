import pg from 'pg';
import type { FaultLog } from './faults.ts';
import type { Delivery } from './rail-recorder.ts';
import type { WorkerExit } from './workers.ts';

/** What the run's database holds once the fleet has stopped, read as the superuser. */
interface ItemRow {
  outbox_id: string;
  idempotency_key: string;
  participant_id: string;
  sequence_id: string;
  terminal: number;
  dispatched: number;
  failed: number;
  dispatched_reference: string | null;
}

export interface ChaosFacts {
  /** Acknowledged items per participant, as the producers counted them. */
  acknowledged: Map<string, number>;
  keyOf(participant: string, sequence: number): string;
  abandonedBatches: number;
  deliveries: Delivery[];
  faults: FaultLog;
  unpromptedExits: WorkerExit[];
  finalExits: WorkerExit[];
  workers: number;
}

export interface ChaosVerdict {
  checks: Record<string, boolean>;
  figures: Record<string, unknown>;
}

/**
 * Compares three independent accounts of the run: what the producers were told was
 * committed, what the database recorded, and what the rail saw and answered.
 */
export async function verifyRun(ownerUrl: string, facts: ChaosFacts): Promise<ChaosVerdict> {
  const client = new pg.Client({ connectionString: ownerUrl });
  await client.connect();
  let items: ItemRow[];
  let pending: number;
  let leases: number;
  try {
    ({ rows: items } = await client.query<ItemRow>(
      `SELECT i.outbox_id::text, i.idempotency_key, i.participant_id, i.sequence_id::text,
              count(a.*) FILTER (WHERE a.state IN ('DISPATCHED', 'FAILED'))::int AS terminal,
              count(a.*) FILTER (WHERE a.state = 'DISPATCHED')::int AS dispatched,
              count(a.*) FILTER (WHERE a.state = 'FAILED')::int AS failed,
              max(a.rail_reference) FILTER (WHERE a.state = 'DISPATCHED') AS dispatched_reference
         FROM payment_outbox_items i
         LEFT JOIN payment_outbox_attempts a ON a.outbox_id = i.outbox_id
        GROUP BY i.outbox_id`,
    ));
    const queue = await client.query<{ pending: number; leases: number }>(
      `SELECT count(*)::int AS pending, count(*) FILTER (WHERE lease_token IS NOT NULL)::int AS leases
         FROM payment_outbox_pending`,
    );
    pending = queue.rows[0]?.pending ?? -1;
    leases = queue.rows[0]?.leases ?? -1;
  } finally {
    await client.end();
  }

  const byKey = new Map(items.map((item) => [item.idempotency_key, item]));
  const expectedKeys: string[] = [];
  for (const [participant, count] of facts.acknowledged) {
    for (let sequence = 1; sequence <= count; sequence += 1) {
      expectedKeys.push(facts.keyOf(participant, sequence));
    }
  }
  const enqueued = expectedKeys.length;
  const missingFromDatabase = expectedKeys.filter((key) => !byKey.has(key)).length;
  const lost = expectedKeys.filter((key) => (byKey.get(key)?.terminal ?? 0) === 0).length;
  const twoOrMoreTerminal = items.filter((item) => item.terminal >= 2).length;
  const failed = items.filter((item) => item.failed > 0).length;

  // Per-participant sequences must be gap-free and end where the producer's count ends.
  const sequencesByParticipant = new Map<string, number[]>();
  for (const item of items) {
    const list = sequencesByParticipant.get(item.participant_id) ?? [];
    list.push(Number(item.sequence_id));
    sequencesByParticipant.set(item.participant_id, list);
  }
  let sequenceMismatches = 0;
  for (const [participant, count] of facts.acknowledged) {
    const sequences = (sequencesByParticipant.get(participant) ?? []).sort((a, b) => a - b);
    const gapFree = sequences.every((value, index) => value === index + 1);
    if (!gapFree || sequences.length !== count) sequenceMismatches += 1;
  }

  // The rail's account, per key.
  const accepted = new Map<string, Delivery[]>();
  let serverErrors = 0;
  let unanswered = 0;
  for (const delivery of facts.deliveries) {
    if (delivery.status >= 500) serverErrors += 1;
    if (!delivery.answered) unanswered += 1;
    if (delivery.status >= 200 && delivery.status < 300) {
      const list = accepted.get(delivery.idempotencyKey) ?? [];
      list.push(delivery);
      accepted.set(delivery.idempotencyKey, list);
    }
  }
  const dispatchedItems = items.filter((item) => item.dispatched > 0);
  const dispatchedWithoutMatchingAnswer = dispatchedItems.filter((item) => {
    const answers = accepted.get(item.idempotency_key) ?? [];
    return !answers.some(
      (delivery) => delivery.answered && delivery.reference === item.dispatched_reference,
    );
  }).length;
  const acceptedButNotDispatched = [...accepted.keys()].filter(
    (key) => (byKey.get(key)?.dispatched ?? 0) === 0,
  ).length;

  // Duplicate acceptances, each attributed to the fault that can explain it.
  const killLeases = new Set(facts.faults.kills.flatMap((kill) => kill.leasesHeld));
  const restartLeases = new Set(facts.faults.pgRestart?.leasesHeld ?? []);
  const duplicates = [...accepted].filter(([, list]) => list.length >= 2);
  let afterKill = 0;
  let afterPgRestart = 0;
  let unexplained = 0;
  for (const [key] of duplicates) {
    const outboxId = byKey.get(key)?.outbox_id ?? '';
    if (killLeases.has(outboxId)) afterKill += 1;
    else if (restartLeases.has(outboxId)) afterPgRestart += 1;
    else unexplained += 1;
  }
  const killLeaseBound = facts.faults.kills.reduce((sum, kill) => sum + kill.leasesHeld.length, 0);

  const finalExitCodes = facts.finalExits.map((exit) => exit.code);
  const gracefulExitCodes = facts.faults.gracefulRestarts.map((exit) => exit.code);
  const checks = {
    enqueuedAllAcknowledged: facts.abandonedBatches === 0,
    sequencesGapFree: sequenceMismatches === 0,
    noneLost: lost === 0 && missingFromDatabase === 0,
    noTwoTerminal: twoOrMoreTerminal === 0,
    queueDrained: pending === 0 && leases === 0,
    everyDispatchedAnswered2xxWithItsReference: dispatchedWithoutMatchingAnswer === 0,
    noFailedItems: failed === 0,
    everyAcceptedKeyDispatched: acceptedButNotDispatched === 0,
    duplicatesExplainedByFaults: unexplained === 0,
    duplicatesWithinKillLeases: afterKill <= killLeaseBound,
    gracefulRestartsExited0: gracefulExitCodes.every((code) => code === 0),
    finalSigtermExited0:
      finalExitCodes.length === facts.workers && finalExitCodes.every((code) => code === 0),
  };
  return {
    checks,
    figures: {
      enqueued,
      itemsInDatabase: items.length,
      lost,
      missingFromDatabase,
      twoOrMoreTerminal,
      failed,
      dispatched: dispatchedItems.length,
      pendingAfterDrain: pending,
      leasesAfterDrain: leases,
      dispatchedWithoutMatching2xx: dispatchedWithoutMatchingAnswer,
      rail: {
        deliveries: facts.deliveries.length,
        accepted: [...accepted.values()].reduce((sum, list) => sum + list.length, 0),
        serverErrors,
        unanswered,
        acceptedButNotDispatched,
      },
      duplicateAcceptances: {
        items: duplicates.length,
        afterKill,
        killLeaseBound,
        afterPgRestart,
        pgRestartLeaseBound: restartLeases.size,
        unexplained,
      },
      sequenceMismatches,
      finalSigtermExitCodes: finalExitCodes,
      gracefulRestartExitCodes: gracefulExitCodes,
      workersExitedOnTheirOwn: facts.unpromptedExits.map((exit) => ({
        id: exit.id,
        code: exit.code,
        signal: exit.signal,
        lastOutput: exit.lastOutput,
      })),
    },
  };
}
