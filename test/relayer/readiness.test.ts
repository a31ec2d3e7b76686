import { describe, expect, it } from 'vitest';
import { enqueueItems } from '../support/outbox-fixtures.ts';
import { freePort, waitUntil } from '../support/processes.ts';
import { startRailServer } from '../support/rail-server.ts';
import { httpRails, relayerDatabase, startRelayer } from '../support/relayer.ts';

describe('probes of a running relayer', () => {
  it('/readyz turns unready as soon as shutdown starts, while in-flight work finishes', async () => {
    const target = await relayerDatabase();
    const rail = await startRailServer();
    rail.setDefault({ status: 200, body: { reference: 'slow' }, delayMs: 1_500 });
    const relayer = await startRelayer(
      target.env({
        SYMPHONY_RAILS: httpRails(rail.url),
        SYMPHONY_HTTP_HOST: '127.0.0.1',
        SYMPHONY_HTTP_PORT: String(await freePort()),
      }),
    );
    const base = `http://127.0.0.1:${relayer.server?.port}`;
    try {
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      await enqueueItems(target.db.owner, 3, { prefix: 'readiness', railType: 'bank' });
      await waitUntil(async () => (rail.requests.length >= 3 ? true : undefined), {
        description: 'dispatches in flight',
      });

      const stopping = relayer.relayer.stop();
      const during = await fetch(`${base}/readyz`);
      expect(during.status).toBe(503);
      expect(((await during.json()) as { failed: string[] }).failed).toContain('shutdown');
      const report = await stopping;
      expect(report).toEqual({ drainedInTime: true, released: 0 });
      const { rows } = await target.db.owner.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM payment_outbox_attempts WHERE state = 'DISPATCHED'`,
      );
      expect(rows[0]?.n).toBe(3);
    } finally {
      await relayer.stop();
      await rail.close();
    }
  });
});

describe('where the probes listen', () => {
  it('binds /metrics, /healthz and /readyz to loopback unless SYMPHONY_HTTP_HOST says otherwise (they have no authentication)', async () => {
    const target = await relayerDatabase();
    const rail = await startRailServer();
    const port = await freePort();
    const env = target.env({
      SYMPHONY_RAILS: httpRails(rail.url),
      SYMPHONY_HTTP_PORT: String(port),
    });
    delete env.SYMPHONY_HTTP_HOST;
    const relayer = await startRelayer(env);
    try {
      expect(relayer.server?.host).toBe('127.0.0.1');
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    } finally {
      await relayer.stop();
    }
    const everywhere = await startRelayer(
      target.env({
        SYMPHONY_RAILS: httpRails(rail.url),
        SYMPHONY_HTTP_HOST: '0.0.0.0',
        SYMPHONY_HTTP_PORT: String(await freePort()),
      }),
    );
    try {
      expect(everywhere.server?.host).toBe('0.0.0.0');
    } finally {
      await everywhere.stop();
      await rail.close();
    }
  });
});
