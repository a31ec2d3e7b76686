import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueItems } from '../support/outbox-fixtures.ts';
import { startOtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver.ts';
import { startRailServer } from '../support/rail-server.ts';
import {
  httpRails,
  relayerDatabase,
  startRelayer,
  waitForAllTerminal,
} from '../support/relayer.ts';

const ITEMS = 40;
const SLOTS = 8;
const CLAIM = 4;

describe('claims under a backlog', () => {
  let claims: ReceivedSpan[];

  beforeAll(async () => {
    const receiver = await startOtlpReceiver();
    const rail = await startRailServer();
    afterAll(async () => {
      await receiver.close();
      await rail.close();
    });
    // Every answer 100 ms after its request: the slots of one claim free within moments of
    // each other, one by one, which is when a worker decides whether a claim is worth it.
    rail.setDefault({ status: 200, body: { reference: 'backlog' }, delayMs: 100 });
    const target = await relayerDatabase();
    // Queued before the worker starts: no NOTIFY, and no poll within the test (60 s), so
    // every claim after the first is a refill under the backlog.
    await enqueueItems(target.db.owner, ITEMS, { railType: 'bank', prefix: 'backlog' });
    const relayer = await startRelayer(
      target.env({
        SYMPHONY_RAILS: httpRails(rail.url),
        SYMPHONY_WORKER_ID: 'backlog-worker',
        SYMPHONY_CONCURRENCY: String(SLOTS),
        SYMPHONY_BATCH_SIZE: String(CLAIM),
        SYMPHONY_POLL_INTERVAL_MS: '60000',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      }),
    );
    try {
      await waitForAllTerminal(target.db, ITEMS);
    } finally {
      // Flushes the spans.
      await relayer.stop();
    }
    claims = receiver.spans.filter((span) => span.name === 'outbox.claim');
  });

  it('asks for a full claim each time, not for the first slots to free up', () => {
    // Refilling at half a claim asked for 2 at a time here: twice the claims, each with its
    // fixed cost in the database (issue 9).
    const requested = claims.map((span) => Number(span.attributes['symphony.claim.requested']));
    expect(requested.length).toBeGreaterThan(0);
    expect(requested.every((count) => count === CLAIM)).toBe(true);
  });

  it('leases the backlog in full claims: ITEMS / CLAIM claims that found items', () => {
    const found = claims
      .map((span) => Number(span.attributes['symphony.claim.claimed']))
      .filter((count) => count > 0);
    expect(found.reduce((sum, count) => sum + count, 0)).toBe(ITEMS);
    expect(found).toEqual(Array.from({ length: ITEMS / CLAIM }, () => CLAIM));
  });
});
