import { beforeAll, describe, expect, it } from 'vitest';
import { emptyFaultLog, type FaultLog } from '../../chaos/faults.ts';
import type { Delivery } from '../../chaos/rail-recorder.ts';
import { verifyRun, type ChaosFacts } from '../../chaos/verifier.ts';
import {
  claimOutboxBatch,
  completeOutboxAttempt,
  enqueuePaymentOutboxBatch,
} from '../../src/db/outbox.ts';
import { freshDatabase, type TestDatabase } from '../support/database.ts';

const keyOf = (participant: string, sequence: number) => `verify-${participant}-${sequence}`;
const accepted = (key: string, reference: string): Delivery => ({
  idempotencyKey: key,
  status: 200,
  reference,
  receivedAt: Date.now(),
  answered: true,
});

/**
 * The chaos verifier must fail a run that lost, half-recorded or double-paid something:
 * three items, of which one is delivered and recorded with the rail's reference, one is
 * recorded with a reference the rail never issued, and one is still leased (lost).
 */
describe('chaos verifier', () => {
  let db: TestDatabase;
  let outboxIds: string[];

  beforeAll(async () => {
    db = await freshDatabase();
    const results = await enqueuePaymentOutboxBatch(
      db.owner,
      [1, 2, 3].map((sequence) => ({
        instructionId: keyOf('p1', sequence),
        participantId: 'p1',
        idempotencyKey: keyOf('p1', sequence),
        railType: 'bank',
        payload: { sequence },
      })),
    );
    outboxIds = results.map((result) => result.outboxId);
    const claimed = await claimOutboxBatch(db.owner, {
      batchSize: 3,
      workerId: 'w1',
      leaseSeconds: 600,
      railTypes: ['bank'],
    });
    const byKey = new Map(claimed.map((item) => [item.idempotencyKey, item]));
    for (const [sequence, reference] of [
      [1, 'chaos-ref-1'],
      [2, 'never-issued'],
    ] as const) {
      const item = byKey.get(keyOf('p1', sequence))!;
      await completeOutboxAttempt(db.owner, 'w1', {
        outboxId: item.outboxId,
        leaseToken: item.leaseToken,
        state: 'DISPATCHED',
        railReference: reference,
      });
    }
  });

  const facts = (overrides: Partial<ChaosFacts> = {}): ChaosFacts => ({
    acknowledged: new Map([['p1', 3]]),
    keyOf,
    abandonedBatches: 0,
    deliveries: [
      accepted(keyOf('p1', 1), 'chaos-ref-1'),
      accepted(keyOf('p1', 1), 'chaos-ref-9'),
      accepted(keyOf('p1', 2), 'chaos-ref-2'),
    ],
    faults: emptyFaultLog(),
    unpromptedExits: [],
    finalExits: [
      { id: 'w1', code: 1, signal: null, sent: 'SIGTERM', at: Date.now(), lastOutput: [] },
    ],
    workers: 1,
    ...overrides,
  });

  it('fails the lost item, the queue left behind, the unmatched reference, the unexplained duplicate and the non-zero exit', async () => {
    const verdict = await verifyRun(db.ownerUrl, facts());
    expect(verdict.checks).toMatchObject({
      sequencesGapFree: true,
      noneLost: false,
      queueDrained: false,
      everyDispatchedAnswered2xxWithItsReference: false,
      duplicatesExplainedByFaults: false,
      finalSigtermExited0: false,
      noTwoTerminal: true,
    });
    expect(verdict.figures).toMatchObject({
      enqueued: 3,
      lost: 1,
      dispatched: 2,
      pendingAfterDrain: 1,
      leasesAfterDrain: 1,
      dispatchedWithoutMatching2xx: 1,
      duplicateAcceptances: { items: 1, unexplained: 1, afterKill: 0 },
    });
  });

  it('counts a duplicate of an item the killed worker held as explained, within the bound', async () => {
    const faults: FaultLog = {
      ...emptyFaultLog(),
      kills: [{ id: 'w1', at: Date.now(), leasesHeld: [outboxIds[0]!] }],
    };
    const verdict = await verifyRun(db.ownerUrl, facts({ faults }));
    expect(verdict.checks.duplicatesExplainedByFaults).toBe(true);
    expect(verdict.checks.duplicatesWithinKillLeases).toBe(true);
    expect(verdict.figures.duplicateAcceptances).toMatchObject({
      items: 1,
      afterKill: 1,
      killLeaseBound: 1,
    });
  });

  it('fails a producer count the database does not hold', async () => {
    const verdict = await verifyRun(db.ownerUrl, facts({ acknowledged: new Map([['p1', 4]]) }));
    expect(verdict.checks.sequencesGapFree).toBe(false);
    expect(verdict.figures).toMatchObject({ enqueued: 4, missingFromDatabase: 1, lost: 2 });
  });
});
