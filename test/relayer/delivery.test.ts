import { beforeAll, describe, expect, it } from 'vitest';
import { enqueueItems, setRetryCeiling } from '../support/outbox-fixtures.ts';
import { waitUntil } from '../support/processes.ts';
import type { RailServer } from '../support/rail-server.ts';
import {
  attemptsOf,
  startRelayerOnHttpRail,
  waitForAllTerminal,
  type RelayerDatabase,
} from '../support/relayer.ts';

describe('delivery through the http rail', () => {
  let target: RelayerDatabase;
  let rail: RailServer;

  beforeAll(async () => {
    const started = await startRelayerOnHttpRail({
      SYMPHONY_CONCURRENCY: '32',
      SYMPHONY_DISPATCH_TIMEOUT_MS: '1000',
      SYMPHONY_LEASE_SECONDS: '10',
    });
    ({ target, rail } = started);
    return started.stop;
  });

  it('delivers 500 items, each once with its idempotency key, one DISPATCHED attempt each', async () => {
    const ids = await enqueueItems(target.db.owner, 500, { prefix: 'happy', railType: 'bank' });
    await waitForAllTerminal(target.db, 500);

    const { rows } = await target.db.owner.query<{
      outbox_id: string;
      idempotency_key: string;
      n: number;
    }>(
      `SELECT a.outbox_id, i.idempotency_key, count(*)::int AS n
         FROM payment_outbox_attempts a JOIN payment_outbox_items i USING (outbox_id)
        WHERE a.state = 'DISPATCHED' GROUP BY a.outbox_id, i.idempotency_key`,
    );
    expect(rows).toHaveLength(500);
    expect(rows.every((row) => row.n === 1)).toBe(true);
    expect(new Set(rows.map((row) => row.outbox_id))).toEqual(new Set(ids));
    const others = await target.db.owner.query(
      `SELECT 1 FROM payment_outbox_attempts WHERE state <> 'DISPATCHED'`,
    );
    expect(others.rowCount).toBe(0);

    const delivered = rail.requests.map((request) => request.headers['idempotency-key']);
    expect(new Set(delivered)).toEqual(new Set(rows.map((row) => row.idempotency_key)));
    expect(rail.requests).toHaveLength(500);
  });

  it("retries a RETRYABLE answer after the rail's Retry-After, then records DISPATCHED", async () => {
    const [id] = await enqueueItems(target.db.owner, 1, {
      prefix: 'retry-after',
      railType: 'bank',
    });
    rail.respondToKey('retry-after-key-1', { status: 503, headers: { 'retry-after': '2' } });
    const firstCall = rail.requests.length;
    await waitForFirstAttempt(id!);
    rail.respondToKey('retry-after-key-1', { status: 200, body: { reference: 'after-retry' } });
    await waitForAllTerminal(target.db, 501);

    const attempts = await attemptsOf(target.db, id!);
    expect(attempts.map((a) => [a.state, a.error_code, a.rail_reference])).toEqual([
      ['RETRYABLE', 'HTTP_503', null],
      ['DISPATCHED', null, 'after-retry'],
    ]);
    const gapSeconds =
      (attempts[1]!.claimed_at.getTime() - attempts[0]!.claimed_at.getTime()) / 1000;
    expect(gapSeconds).toBeGreaterThanOrEqual(1.9);
    expect(rail.requests.length - firstCall).toBe(2);
  });

  it('records FAILED with the status for a 4xx rejection, without retrying', async () => {
    const [id] = await enqueueItems(target.db.owner, 1, { prefix: 'reject', railType: 'bank' });
    rail.respondToKey('reject-key-1', { status: 422, body: { error: 'invalid account' } });
    await waitForAllTerminal(target.db, 502);
    expect(
      (await attemptsOf(target.db, id!)).map((a) => [a.state, a.error_code, a.rail_code]),
    ).toEqual([['FAILED', 'HTTP_422', '422']]);
    rail.respondToKey('reject-key-1', { status: 200 });
  });

  it('records a rail timeout as RETRYABLE TIMEOUT and delivers on the next attempt', async () => {
    const [id] = await enqueueItems(target.db.owner, 1, { prefix: 'slow', railType: 'bank' });
    rail.respondToKey('slow-key-1', { status: 200, delayMs: 3_000 });
    await waitForFirstAttempt(id!);
    rail.respondToKey('slow-key-1', { status: 200, body: { reference: 'fast-now' } });
    await waitForAllTerminal(target.db, 503);
    expect((await attemptsOf(target.db, id!)).map((a) => [a.state, a.error_code])).toEqual([
      ['RETRYABLE', 'TIMEOUT'],
      ['DISPATCHED', null],
    ]);
  });

  it('INV-RELAY-RAIL-ROUTING: an item whose rail_type this worker has no adapter for is never claimed, never FAILED', async () => {
    const [unserved] = await enqueueItems(target.db.owner, 1, {
      prefix: 'nowhere',
      railType: 'carrier-pigeon',
    });
    // Enqueued after it, due after it: once this one is done, a claim has passed the other by.
    const [served] = await enqueueItems(target.db.owner, 1, {
      prefix: 'after-nowhere',
      railType: 'bank',
    });
    await waitUntil(
      async () =>
        (await attemptsOf(target.db, served!)).some((a) => a.state === 'DISPATCHED')
          ? true
          : undefined,
      { description: 'the bank item enqueued after the unserved one dispatched' },
    );
    expect(await attemptsOf(target.db, unserved!)).toEqual([]);
    const { rows } = await target.db.owner.query<{ claimed_by: string | null }>(
      'SELECT claimed_by FROM payment_outbox_pending WHERE outbox_id = $1',
      [unserved],
    );
    expect(rows).toEqual([{ claimed_by: null }]);
    // Leave the queue empty for the other tests' "nothing pending" waits.
    await target.db.owner.query('DELETE FROM payment_outbox_pending WHERE outbox_id = $1', [
      unserved,
    ]);
  });

  async function waitForFirstAttempt(id: string) {
    await waitUntil(async () => ((await attemptsOf(target.db, id)).length > 0 ? true : undefined), {
      description: `first attempt of ${id}`,
    });
  }
});

describe('retry ceiling', () => {
  it('ends an item FAILED when the rail keeps answering RETRYABLE', async () => {
    const { target, rail, stop } = await startRelayerOnHttpRail({}, async ({ target, rail }) => {
      await setRetryCeiling(target.db.owner, 3);
      rail.setDefault({ status: 503, headers: { 'retry-after': '0' } });
    });
    try {
      const [id] = await enqueueItems(target.db.owner, 1, { prefix: 'ceiling', railType: 'bank' });
      await waitForAllTerminal(target.db, 1);
      expect((await attemptsOf(target.db, id!)).map((a) => a.state)).toEqual([
        'RETRYABLE',
        'RETRYABLE',
        'FAILED',
      ]);
      expect(rail.requests).toHaveLength(3);
    } finally {
      await stop();
    }
  });
});
