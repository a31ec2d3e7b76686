import type { Pool } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool } from '../../src/db/pool.ts';
import { repairExpiredLeases } from '../../src/db/outbox.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { RelayerMetrics } from '../../src/observability/metrics.ts';
import { Completer } from '../../src/relayer/completer.ts';
import { captureLogs } from '../support/log-capture.ts';
import { enqueueAndClaim, expireLeases, readAttempts } from '../support/outbox-fixtures.ts';
import { relayerDatabase, type RelayerDatabase } from '../support/relayer.ts';

// One database per mode: items one test leaves behind (a repaired item is due again a
// second later) must not be claimed by the other mode's tests.
async function completerDatabase() {
  const target = await relayerDatabase();
  const executor = createPool({
    connectionString: target.login.url,
    applicationName: 'completer test',
    max: 4,
  });
  afterAll(() => executor.end());
  return { target, executor };
}

function completerFor(executor: Pool, workerId: string, batch: boolean) {
  const logs = captureLogs();
  const metrics = new RelayerMetrics();
  const completer = new Completer({
    pool: executor,
    workerId,
    retry: { baseMs: 1000, maxMs: 2000, jitter: 0 },
    logger: createLogger({ level: 'info', name: 'completer-test', destination: logs }),
    metrics,
    onRetryScheduled: () => undefined,
    batch,
  });
  const counter = async (name: string) =>
    (await metrics.registry.getMetricsAsJSON())
      .find((metric) => metric.name === name)
      ?.values.reduce((sum, value) => sum + value.value, 0) ?? 0;
  return { completer, logs, counter };
}

const dispatched = { state: 'DISPATCHED', railReference: 'ref', latencyMs: 3 } as const;

describe.each([
  ['batched', true],
  ['per-item', false],
])('Completer (%s)', (_mode, batch) => {
  let target: RelayerDatabase;
  let executor: Pool;
  beforeAll(async () => {
    ({ target, executor } = await completerDatabase());
  });

  it('counts and logs a lost lease (P7002) without retrying or recording anything', async () => {
    const workerId = `stale-${batch}`;
    const [item] = await enqueueAndClaim(target.db.owner, 1, { workerId, prefix: `lost-${batch}` });
    await expireLeases(target.db.owner, [item!.outboxId]);
    await repairExpiredLeases(target.db.owner, { batchSize: 10, workerId: 'repairer' });

    const { completer, logs, counter } = completerFor(executor, workerId, batch);
    await completer.complete(item!, dispatched);

    expect(await counter('symphony_relay_lease_lost_total')).toBe(1);
    expect(await counter('symphony_relay_items_completed_total')).toBe(0);
    expect(logs.records().map((record) => record.event)).toEqual(['lease_lost']);
    const attempts = await readAttempts(target.db.owner, [item!.outboxId]);
    expect(attempts.map((attempt) => attempt.state)).toEqual(['ZOMBIE_REQUEUE']);
  });

  it('records every outcome of a burst once, and an outcome the database rejects fails alone', async () => {
    const workerId = `burst-${batch}`;
    const items = await enqueueAndClaim(target.db.owner, 20, {
      workerId,
      prefix: `burst-${batch}`,
    });
    const { completer, logs, counter } = completerFor(executor, workerId, batch);
    const poisoned = items[7]!;
    await Promise.all(
      items.map((item) =>
        completer.complete(
          item,
          item === poisoned
            ? // A NUL character cannot be stored in PostgreSQL text: the database refuses it.
              { state: 'FAILED', errorCode: 'BAD', errorMessage: 'nul \u0000 here', latencyMs: 1 }
            : dispatched,
        ),
      ),
    );
    const attempts = await readAttempts(
      target.db.owner,
      items.map((item) => item.outboxId),
    );
    expect(attempts).toHaveLength(19);
    expect(attempts.some((attempt) => attempt.outbox_id === poisoned.outboxId)).toBe(false);
    expect(await counter('symphony_relay_items_completed_total')).toBe(19);
    const events = logs.records().map((record) => record.event);
    expect(events.filter((event) => event === 'completion_failed')).toHaveLength(1);
    if (batch) expect(events).toContain('completion_batch_failed');
  });
});
