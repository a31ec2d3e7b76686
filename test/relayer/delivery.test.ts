import { beforeEach, describe, expect, it } from 'vitest';
import { enqueueItems, makeDue, setRetryCeiling } from '../support/outbox-fixtures.ts';
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

  // Each test gets its own database, rail and relayer: no counts or scripted answers carry
  // over, so the tests pass in any order and alone.
  beforeEach(async () => {
    const started = await startRelayerOnHttpRail({
      SYMPHONY_CONCURRENCY: '32',
      // Generous, so a loaded machine's slow answers are not timeouts; the timeout test
      // answers later still.
      SYMPHONY_DISPATCH_TIMEOUT_MS: '5000',
      SYMPHONY_LEASE_SECONDS: '30',
      // Room for the Retry-After of 30 s below (the test defaults cap retries at 2 s).
      SYMPHONY_RETRY_MAX_MS: '60000',
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
    rail.respondNext({ status: 503, headers: { 'retry-after': '30' } });
    rail.setDefault({ status: 200, body: { reference: 'after-retry' } });
    const [id] = await enqueueItems(target.db.owner, 1, {
      prefix: 'retry-after',
      railType: 'bank',
    });
    await waitForFirstAttempt(id!);
    // The retry is scheduled by the database: the RETRYABLE attempt and the pending row's
    // next_attempt_at are written in one transaction (claimed_at is now() of it), so the
    // schedule is exactly the rail's Retry-After, read without timing anything.
    const { rows: scheduled } = await target.db.owner.query<{ delay_ms: number }>(
      `SELECT (extract(epoch FROM p.next_attempt_at - a.claimed_at) * 1000)::int AS delay_ms
         FROM payment_outbox_pending p
         JOIN payment_outbox_attempts a ON a.outbox_id = p.outbox_id AND a.attempt_no = 1
        WHERE p.outbox_id = $1 AND p.claimed_by IS NULL`,
      [id],
    );
    expect(scheduled).toEqual([{ delay_ms: 30_000 }]);
    // Time travel instead of a 30 s wait: once due, the next poll delivers it.
    await makeDue(target.db.owner, [id!]);
    await waitForAllTerminal(target.db, 1);

    const attempts = await attemptsOf(target.db, id!);
    expect(attempts.map((a) => [a.state, a.error_code, a.rail_reference])).toEqual([
      ['RETRYABLE', 'HTTP_503', null],
      ['DISPATCHED', null, 'after-retry'],
    ]);
    expect(rail.requests).toHaveLength(2);
  });

  it('records FAILED with the status for a 4xx rejection, without retrying', async () => {
    rail.respondNext({ status: 422, body: { error: 'invalid account' } });
    const [id] = await enqueueItems(target.db.owner, 1, { prefix: 'reject', railType: 'bank' });
    await waitForAllTerminal(target.db, 1);
    expect(
      (await attemptsOf(target.db, id!)).map((a) => [a.state, a.error_code, a.rail_code]),
    ).toEqual([['FAILED', 'HTTP_422', '422']]);
    expect(rail.requests).toHaveLength(1);
  });

  it('records a rail timeout as RETRYABLE TIMEOUT and delivers on the next attempt', async () => {
    rail.respondNext({ status: 200, delayMs: 30_000 });
    rail.setDefault({ status: 200, body: { reference: 'fast-now' } });
    const [id] = await enqueueItems(target.db.owner, 1, { prefix: 'slow', railType: 'bank' });
    await waitForAllTerminal(target.db, 1);
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
