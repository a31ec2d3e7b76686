import { describe, expect, it } from 'vitest';
import { startRuntime } from '../../src/cli/runtime.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { captureLogs } from '../support/log-capture.ts';
import { enqueueItems, setRetryCeiling } from '../support/outbox-fixtures.ts';
import { startRailServer } from '../support/rail-server.ts';
import { httpRails, relayerDatabase, waitForAllTerminal } from '../support/relayer.ts';

const ITEM_FIELDS = ['outboxId', 'instructionId', 'participantId', 'sequenceId', 'rail', 'attempt'];

describe('what an operator sees about each item: log lines and metrics', () => {
  it('logs every dispatch at debug and every failed attempt with the item, worker, HTTP status and latency; counts error codes and the retry ceiling', async () => {
    const target = await relayerDatabase();
    await setRetryCeiling(target.db.owner, 2);
    const rail = await startRailServer();
    // enqueueItems gives item n the idempotency key <prefix>-key-<n>: the first is refused
    // until the retry ceiling turns it FAILED, the second goes through.
    rail.respondToKey('observed-key-1', { status: 503, headers: { 'retry-after': '0' } });
    const logs = captureLogs();
    const runtime = await startRuntime(
      target.env({ SYMPHONY_RAILS: httpRails(rail.url), SYMPHONY_WORKER_ID: 'observed-1' }),
      createLogger({ level: 'debug', name: 'item-observability', destination: logs }),
    );
    let metrics: string;
    try {
      await enqueueItems(target.db.owner, 2, { railType: 'bank', prefix: 'observed' });
      await waitForAllTerminal(target.db, 2);
      metrics = await runtime.metrics.text();
    } finally {
      await runtime.stop();
      await rail.close();
    }

    const records = logs.records();
    const dispatches = records.filter((record) => record.event === 'dispatch');
    expect(dispatches).toHaveLength(3);
    for (const line of dispatches) {
      for (const field of ITEM_FIELDS) expect(line, field).toHaveProperty(field);
      expect(line).toMatchObject({ level: 'debug', workerId: 'observed-1', rail: 'bank' });
      expect(line.httpStatus).toEqual(expect.any(Number));
      expect(line.latencyMs).toEqual(expect.any(Number));
    }
    expect(
      dispatches.map((line) => [line.instructionId, line.attempt, line.httpStatus]).sort(),
    ).toEqual([
      ['observed-1', 1, 503],
      ['observed-1', 2, 503],
      ['observed-2', 1, 200],
    ]);

    const failures = records.filter((record) => record.event === 'attempt_failed');
    expect(failures.map((line) => [line.attempt, line.state, line.retryCeilingReached])).toEqual([
      [1, 'RETRYABLE', undefined],
      [2, 'FAILED', true],
    ]);
    for (const line of failures) {
      for (const field of ITEM_FIELDS) expect(line, field).toHaveProperty(field);
      expect(line).toMatchObject({
        level: 'warn',
        workerId: 'observed-1',
        participantId: 'observed-participant',
        errorCode: 'HTTP_503',
        httpStatus: 503,
        latencyMs: expect.any(Number),
      });
    }

    // No payload ({"n": …}) and no idempotency key in any line.
    expect(logs.text()).not.toContain('observed-key-1');
    expect(logs.text()).not.toMatch(/"n":/);

    expect(metrics).toContain(
      'symphony_relay_attempt_errors_total{rail="bank",outcome="retryable",error_code="HTTP_503"} 1',
    );
    expect(metrics).toContain(
      'symphony_relay_attempt_errors_total{rail="bank",outcome="failed",error_code="HTTP_503"} 1',
    );
    expect(metrics).toContain('symphony_relay_retry_ceiling_reached_total{rail="bank"} 1');
  });
});
