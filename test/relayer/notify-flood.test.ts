import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { enqueueItems } from '../support/outbox-fixtures.ts';
import { freePort, waitUntil } from '../support/processes.ts';
import { startRailServer } from '../support/rail-server.ts';
import {
  httpRails,
  relayerDatabase,
  spawnRelayer,
  waitForAllTerminal,
} from '../support/relayer.ts';

/** The attacker's text: it must never reach the relayer's log. */
const MARKER = 'ATTACKER-TEXT-7f3a';
const BATCHES = 20;
const PER_BATCH = 1_000;
const SPOOFED = BATCHES * PER_BATCH + 1;

async function metricValue(base: string, name: string): Promise<number | undefined> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe('spoofed NOTIFY outbox_pending (issue 12)', () => {
  it('INV-NOTIFY-WAKEUP-ONLY: a flood of garbage notifications from a login acting as no runtime role leaves /readyz 200, the relayer draining, and the log bounded and free of the payload', async () => {
    const target = await relayerDatabase();
    const rail = await startRailServer();
    const base = `http://127.0.0.1:${await freePort()}`;
    const relayer = spawnRelayer(
      target.env({
        SYMPHONY_RAILS: httpRails(rail.url),
        SYMPHONY_HTTP_HOST: '127.0.0.1',
        SYMPHONY_HTTP_PORT: new URL(base).port,
        // Only notifications (and the drain loop) wake it: no poll timer during the test.
        SYMPHONY_POLL_INTERVAL_MS: '600000',
        LOG_LEVEL: 'debug',
      }),
    );
    const attacker = await target.db.createLoginRole([], { sessionRole: null });
    const spoofer = new pg.Client({ connectionString: attacker.url });
    try {
      await waitUntil(
        async () => ((await fetch(`${base}/readyz`).catch(() => undefined))?.ok ? true : undefined),
        { description: `relayer ready (output: ${relayer.output().slice(-1500)})`, attempts: 240 },
      );
      await spoofer.connect();
      // The premise: a plain login, acting as itself and member of no role at all.
      const who = await spoofer.query<{ acting: string; memberships: number }>(
        `SELECT current_user AS acting,
                (SELECT count(*)::int FROM pg_catalog.pg_auth_members
                  WHERE member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)) AS memberships`,
      );
      expect(who.rows).toEqual([{ acting: attacker.name, memberships: 0 }]);

      // The reproduction of the report, then a flood of unparseable payloads. Statements of
      // one simple query share a transaction; distinct payloads are each delivered.
      await spoofer.query(`NOTIFY outbox_pending, 'not json ${MARKER}'`);
      for (let batch = 0; batch < BATCHES; batch += 1) {
        const statements = Array.from(
          { length: PER_BATCH },
          (_, n) => `NOTIFY outbox_pending, '{"${MARKER}": ${batch}-${n}'`,
        );
        await spoofer.query(statements.join(';\n'));
      }
      await enqueueItems(target.db.owner, 20, { prefix: 'after-flood', railType: 'bank' });
      await waitForAllTerminal(target.db, 20);
      // Every spoofed notification has reached the relayer (counted, never parsed)...
      await waitUntil(
        async () => {
          const received = await metricValue(base, 'symphony_relay_notifications_received_total');
          return received !== undefined && received >= SPOOFED ? received : undefined;
        },
        { description: `${SPOOFED} notifications received`, attempts: 480 },
      );

      // ...and the relayer is still ready, with its LISTEN connection up.
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(200);
      expect(await metricValue(base, 'symphony_relay_listener_connected')).toBe(1);
      await enqueueItems(target.db.owner, 5, { prefix: 'still-listening', railType: 'bank' });
      await waitForAllTerminal(target.db, 25);

      const lines = relayer.output().split('\n').filter(Boolean);
      expect(relayer.output()).not.toContain(MARKER);
      expect(relayer.output()).not.toMatch(/listener_(lost|error)|notification payload/);
      // Start-up, a debug line per dispatch, nothing per notification (the old relayer wrote one per notification).
      expect(lines.length).toBeLessThan(200);
    } finally {
      await spoofer.end().catch(() => undefined);
      relayer.child.kill('SIGTERM');
      await relayer.exited;
      await rail.close();
    }
  });
});
