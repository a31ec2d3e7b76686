/**
 * Per-rail controls obeyed by a fleet of three relayer processes, set with the commands an
 * operator runs, observed at a loopback rail that records what it receives and when.
 */
import { describe, expect, it } from 'vitest';
import { railOverview } from '../../src/db/controls.ts';
import { runCli } from '../support/cli.ts';
import { startFleet } from '../support/fleet.ts';
import { enqueueItems, uniquePrefix } from '../support/outbox-fixtures.ts';
import { waitUntil } from '../support/processes.ts';
import { startRailServer, type RecordedRequest } from '../support/rail-server.ts';
import { relayerDatabase, type RelayerDatabase } from '../support/relayer.ts';

async function dispatchedCount(target: RelayerDatabase): Promise<number> {
  const { rows } = await target.db.owner.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM payment_outbox_attempts WHERE state = 'DISPATCHED'",
  );
  return rows[0]?.n ?? -1;
}

/**
 * Gives up well inside the test's 60 s, saying where the items are: a wait that outlives the
 * test's timeout reports only "timed out" (it did once, in a full suite run; every other run
 * of this file took 9-11 s).
 */
async function waitForDispatched(target: RelayerDatabase, count: number): Promise<void> {
  try {
    await waitUntil(async () => ((await dispatchedCount(target)) === count ? true : undefined), {
      description: `${count} items DISPATCHED`,
      attempts: 140,
    });
  } catch (error) {
    const { rows } = await target.db.owner.query<{ where_they_are: unknown }>(
      `SELECT json_build_object(
         'attempts', (SELECT json_object_agg(s.state, s.n) FROM (SELECT state::text, count(*) AS n
                        FROM payment_outbox_attempts GROUP BY state) s),
         'queued', (SELECT json_agg(json_build_object('claimed_by', q.claimed_by,
                      'lease_expires_at', q.lease_expires_at, 'next_attempt_at', q.next_attempt_at,
                      'attempt_count', q.attempt_count) ORDER BY q.next_attempt_at)
                      FROM payment_outbox_pending q),
         'rail_state', (SELECT json_agg(r) FROM outbox_rail_state r),
         'now', now()) AS where_they_are`,
    );
    throw new Error(`${(error as Error).message}; ${JSON.stringify(rows[0]?.where_they_are)}`, {
      cause: error,
    });
  }
}

async function controlLogin(target: RelayerDatabase) {
  return { DATABASE_URL: (await target.db.createLoginRole(['symphony_control'])).url };
}

const header = (request: RecordedRequest, name: string) => String(request.headers[name]);

describe('per-rail controls across three relayer processes', () => {
  it('INV-RELAY-RATE-LIMIT: three workers together stay within the rail’s fleet-wide limit', async () => {
    const target = await relayerDatabase();
    const operator = await controlLogin(target);
    const rail = await startRailServer();
    const LIMIT = 20;
    const ITEMS = 140;
    const set = await runCli(
      ['rail', 'set', 'bank', '--max-per-second', String(LIMIT), '--reason', 'bank allows 20/s'],
      operator,
    );
    expect(set, set.stderr).toMatchObject({ code: 0 });
    expect(set.stdout).toContain('rate limit     20/s for the whole fleet');
    const fleet = await startFleet(target, rail.url, 3);
    try {
      await enqueueItems(target.db.owner, ITEMS, {
        prefix: uniquePrefix('limited'),
        railType: 'bank',
        participants: ['p1', 'p2', 'p3', 'p4'],
      });
      await waitForDispatched(target, ITEMS);
    } finally {
      await fleet.stop();
      await rail.close();
    }
    expect(rail.requests).toHaveLength(ITEMS);
    // Per second of the rail's own clock, from the first delivery. The bucket holds one
    // second's worth (the first burst) and refills at LIMIT/s, so the first k seconds see
    // at most LIMIT + LIMIT * k deliveries, plus one second of slack for the time from claim
    // to arrival; no single second sees much more than the burst plus the refill.
    const start = rail.requests[0]!.receivedAt;
    const perSecond: number[] = [];
    for (const request of rail.requests) {
      const second = Math.floor((request.receivedAt - start) / 1000);
      perSecond[second] = (perSecond[second] ?? 0) + 1;
    }
    let cumulative = 0;
    for (const [second, count = 0] of perSecond.entries()) {
      cumulative += count;
      expect(
        cumulative,
        `deliveries up to second ${second}: ${perSecond.join(',')}`,
      ).toBeLessThanOrEqual(LIMIT + LIMIT * (second + 2));
      expect(count, `deliveries in second ${second}: ${perSecond.join(',')}`).toBeLessThanOrEqual(
        2.5 * LIMIT,
      );
    }
    // The last delivery cannot come before the bucket has refilled ITEMS - LIMIT tokens.
    // (A lower bound: a slow machine only makes it later.)
    const spanSeconds = (rail.requests.at(-1)!.receivedAt - start) / 1000;
    expect(spanSeconds).toBeGreaterThanOrEqual((ITEMS - LIMIT) / LIMIT - 1);
    // The limit was shared: items went out through more than one process. Not through all
    // three every time: the bucket is first come, first served, so which worker's claim finds
    // tokens is a race (passing runs split 140 items as 32/102/6 and 110/12/18), and under a
    // loaded machine one worker can miss out entirely.
    const { rows: perWorker } = await target.db.owner.query<{ worker_id: string; n: number }>(
      'SELECT worker_id, count(*)::int AS n FROM payment_outbox_attempts GROUP BY worker_id ORDER BY worker_id',
    );
    expect(perWorker.length, JSON.stringify(perWorker)).toBeGreaterThanOrEqual(2);
  });

  it('INV-RELAY-BREAKER: a rail that goes down opens the breaker for the whole fleet; items stop being tried; after it comes back a probe closes it and everything is delivered once', async () => {
    const target = await relayerDatabase();
    const operator = await controlLogin(target);
    const rail = await startRailServer();
    rail.setDefault({ status: 503, body: 'down' });
    const set = await runCli(
      [
        'rail',
        'set',
        'bank',
        '--breaker-threshold',
        '3',
        '--breaker-cooldown-seconds',
        '2',
        '--breaker-max-cooldown-seconds',
        '4',
        '--reason',
        'protect bank',
      ],
      operator,
    );
    expect(set, set.stderr).toMatchObject({ code: 0 });
    const ITEMS = 30;
    const fleet = await startFleet(target, rail.url, 3, { SYMPHONY_CONCURRENCY: '2' });
    try {
      await enqueueItems(target.db.owner, ITEMS, {
        prefix: uniquePrefix('breaker'),
        railType: 'bank',
        participants: ['p1', 'p2', 'p3'],
      });
      // Down until the breaker opened and one half-open probe failed (cool-down doubled).
      await waitUntil(
        async () => {
          const [bank] = await railOverview(target.db.owner);
          return bank && bank.breakerState !== 'closed' ? bank : undefined;
        },
        { description: 'the breaker open', attempts: 480 },
      );
      const whenOpened = rail.requests.length;
      await waitUntil(
        async () => {
          const [bank] = await railOverview(target.db.owner);
          return bank?.breakerState === 'open' && bank.cooldownSeconds === 4 ? bank : undefined;
        },
        { description: 'the breaker open after a failed probe', attempts: 480 },
      );
      const shown = await runCli(['rail', 'show', 'bank'], operator);
      expect(shown.stdout).toMatch(
        /breaker {8}open \(opens after 3 consecutive transport failures/,
      );
      const whileDown = rail.requests.length;
      const triedWhileDown = new Set(
        rail.requests.map((request) => header(request, 'idempotency-key')),
      ).size;
      // Once open, only the half-open probe reaches the rail (plus at most a dispatch that
      // was claimed just before it opened). Before: the run that opened it, what the three
      // workers had in flight, and what they claimed before the third failure committed.
      // Without the breaker, 30 items retrying every 1-2 s would all be tried, again and again.
      expect(whileDown - whenOpened).toBeLessThanOrEqual(3);
      expect(whileDown).toBeLessThanOrEqual(3 + 6 + 6 + 2);
      expect(triedWhileDown).toBeLessThan(ITEMS);
      const metrics = await fleet.sample('symphony_relay_rail_breaker_state{rail="bank"}');
      expect(metrics.every((value) => value >= 1)).toBe(true);

      rail.setDefault({ status: 200, body: { reference: 'back' } });
      await waitForDispatched(target, ITEMS);
      const [bank] = await railOverview(target.db.owner);
      expect(bank).toMatchObject({ breakerState: 'closed', consecutiveFailures: 0 });
    } finally {
      await fleet.stop();
      await rail.close();
    }
    const delivered = rail.requests.filter((request) => request.status === 200);
    expect(new Set(delivered.map((request) => header(request, 'idempotency-key'))).size).toBe(
      ITEMS,
    );
    expect(delivered).toHaveLength(ITEMS);
  });

  it('INV-RELAY-ORDERED: each participant’s items reach the rail strictly in sequence order, one at a time, through random 503s; participants interleave', async () => {
    const target = await relayerDatabase();
    const operator = await controlLogin(target);
    const rail = await startRailServer();
    rail.respondWith(() => (Math.random() < 0.25 ? { status: 503, body: 'busy' } : undefined));
    const set = await runCli(
      ['rail', 'set', 'bank', '--ordered', '--reason', 'ledger needs order'],
      operator,
    );
    expect(set, set.stderr).toMatchObject({ code: 0 });
    const PARTICIPANTS = ['alice', 'bob', 'carol', 'dave'].map((name) => uniquePrefix(name));
    const PER_PARTICIPANT = 8;
    const fleet = await startFleet(target, rail.url, 3);
    try {
      // One batch per round, so every participant has many items queued at once.
      for (let round = 0; round < PER_PARTICIPANT; round += 1) {
        await enqueueItems(target.db.owner, PARTICIPANTS.length, {
          prefix: uniquePrefix(`ordered-${round}`),
          railType: 'bank',
          participants: PARTICIPANTS,
        });
      }
      await waitForDispatched(target, PARTICIPANTS.length * PER_PARTICIPANT);
    } finally {
      await fleet.stop();
      await rail.close();
    }
    expect(rail.requests.some((request) => request.status === 503)).toBe(true);
    for (const participant of PARTICIPANTS) {
      const received = rail.requests.filter(
        (request) => header(request, 'x-symphony-participant-id') === participant,
      );
      const sequences = received.map((request) =>
        Number(header(request, 'x-symphony-sequence-id')),
      );
      // Strictly in order: a sequence is only ever followed by itself (a retry) or the next.
      for (let index = 1; index < sequences.length; index += 1) {
        const step = sequences[index]! - sequences[index - 1]!;
        expect([0, 1], `${participant}: ${sequences.join(',')}`).toContain(step);
        // The next one only after the previous one was accepted.
        if (step === 1) expect(received[index - 1]!.status).toBe(200);
      }
      expect(
        received
          .filter((request) => request.status === 200)
          .map((request) => Number(header(request, 'x-symphony-sequence-id'))),
      ).toEqual(Array.from({ length: PER_PARTICIPANT }, (_, index) => index + 1));
    }
    // Participants proceed in parallel: the arrival order is not one participant after another.
    const order = rail.requests.map((request) => header(request, 'x-symphony-participant-id'));
    const switches = order.filter(
      (participant, index) => index > 0 && participant !== order[index - 1],
    ).length;
    expect(switches).toBeGreaterThan(PARTICIPANTS.length);
  });
});
