/**
 * Operator controls obeyed by a fleet: three relayer processes, a loopback http rail that
 * records what it receives, and the commands an operator runs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.ts';
import { startFleet, waitForFleetSample, type Fleet } from '../support/fleet.ts';
import { enqueueItems, uniquePrefix } from '../support/outbox-fixtures.ts';
import { waitUntil } from '../support/processes.ts';
import { startRailServer, type RailServer } from '../support/rail-server.ts';
import { relayerDatabase, type RelayerDatabase } from '../support/relayer.ts';

let target: RelayerDatabase;
let rail: RailServer;
let fleet: Fleet;
let operator: { DATABASE_URL: string };

beforeAll(async () => {
  target = await relayerDatabase();
  operator = { DATABASE_URL: (await target.db.createLoginRole(['symphony_control'])).url };
  rail = await startRailServer();
  fleet = await startFleet(target, rail.url, 3);
});

afterAll(async () => {
  await fleet?.stop();
  await rail?.close();
});

async function ledger(outboxIds: readonly string[]) {
  const { rows } = await target.db.owner.query<{
    outbox_id: string;
    state: string;
    drive: number;
    n: number;
  }>(
    `SELECT outbox_id, state::text AS state, drive, count(*)::int AS n
       FROM payment_outbox_attempts WHERE outbox_id = ANY($1::uuid[])
      GROUP BY 1, 2, 3 ORDER BY 1, 3, 2`,
    [outboxIds],
  );
  return rows;
}

async function keysOf(outboxIds: readonly string[]): Promise<string[]> {
  const { rows } = await target.db.owner.query<{ idempotency_key: string }>(
    'SELECT idempotency_key FROM payment_outbox_items WHERE outbox_id = ANY($1::uuid[])',
    [outboxIds],
  );
  return rows.map((row) => row.idempotency_key);
}

const delivered = (key: string) =>
  rail.requests.filter((request) => request.headers['idempotency-key'] === key).length;

describe('a fleet of three relayers', () => {
  it('INV-RELAY-PAUSE: while a rail is paused no worker sends it anything; after resume every item is delivered once', async () => {
    const paused = await runCli(['pause', '--rail', 'bank', '--reason', 'bank incident'], operator);
    expect(paused, paused.stderr).toMatchObject({ code: 0 });
    const ids = await enqueueItems(target.db.owner, 30, {
      prefix: uniquePrefix('paused'),
      railType: 'bank',
    });

    // Every worker has seen the pause and the 30 due items, then polled at least twice more.
    await waitForFleetSample(fleet, 'symphony_relay_dispatch_paused{scope="rail"}', (v) => v === 1);
    await waitForFleetSample(fleet, 'symphony_relay_queue_due', (v) => v === 30);
    const polls = 'symphony_relay_wakeups_total{source="poll"}';
    const before = await fleet.sample(polls);
    await waitUntil(
      async () => {
        const now = await fleet.sample(polls);
        return now.every((value, index) => value >= before[index]! + 2) ? now : undefined;
      },
      { description: 'two more polls on every worker', attempts: 240 },
    );
    expect(rail.requests).toHaveLength(0);
    expect(await ledger(ids)).toEqual([]);

    const resumed = await runCli(
      ['resume', '--rail', 'bank', '--reason', 'bank is back'],
      operator,
    );
    expect(resumed, resumed.stderr).toMatchObject({ code: 0 });
    await waitUntil(async () => ((await ledger(ids)).length === 30 ? true : undefined), {
      description: '30 items recorded after resume',
      attempts: 480,
    });
    expect((await ledger(ids)).every((row) => row.state === 'DISPATCHED' && row.n === 1)).toBe(
      true,
    );
    for (const key of await keysOf(ids)) expect(delivered(key)).toBe(1);
    await waitForFleetSample(fleet, 'symphony_relay_dispatch_paused{scope="rail"}', (v) => v === 0);
  });

  it('INV-RELAY-REDRIVE: a FAILED item re-driven by the operator reaches the rail again with the same key and is recorded DISPATCHED once', async () => {
    const prefix = uniquePrefix('redrive');
    rail.respondToKey(`${prefix}-key-1`, { status: 422, body: { error: 'account closed' } });
    const [failed] = await enqueueItems(target.db.owner, 1, { prefix, railType: 'bank' });
    await waitUntil(async () => ((await ledger([failed!])).length === 1 ? true : undefined), {
      description: 'the item recorded FAILED',
      attempts: 480,
    });
    expect(await ledger([failed!])).toEqual([
      { outbox_id: failed, state: 'FAILED', drive: 1, n: 1 },
    ]);

    const listed = await runCli(['failed', '--rail', 'bank', '--json'], operator);
    expect(JSON.parse(listed.stdout)).toEqual([
      expect.objectContaining({ outboxId: failed, errorCode: 'HTTP_422', attempts: 1 }),
    ]);

    rail.respondToKey(`${prefix}-key-1`, {
      status: 200,
      body: { reference: 'paid-after-redrive' },
    });
    const redriven = await runCli(
      ['redrive', '--outbox-id', failed!, '--reason', 'account reopened'],
      operator,
    );
    expect(redriven, redriven.stderr).toMatchObject({ code: 0 });
    await waitUntil(async () => ((await ledger([failed!])).length === 2 ? true : undefined), {
      description: 'the re-driven item recorded',
      attempts: 480,
    });
    expect(await ledger([failed!])).toEqual([
      { outbox_id: failed, state: 'FAILED', drive: 1, n: 1 },
      { outbox_id: failed, state: 'DISPATCHED', drive: 2, n: 1 },
    ]);
    expect(delivered(`${prefix}-key-1`)).toBe(2);
    const again = await runCli(['redrive', '--outbox-id', failed!, '--reason', 'again'], operator);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('(SQLSTATE P7501)');
  });
});
