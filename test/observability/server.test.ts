import { afterEach, describe, expect, it } from 'vitest';
import { RelayerMetrics } from '../../src/observability/metrics.ts';
import {
  startObservabilityServer,
  type HealthSources,
  type ObservabilityServer,
  type Readiness,
} from '../../src/observability/server.ts';

const STALL_BOUND_MS = 30_000;

/** A metrics object on a hand-moved clock: staleness is reached by moving time, not by sleeping. */
function manualClock() {
  const clock = { now: 1_700_000_000_000 };
  return { clock, metrics: new RelayerMetrics({ clock: () => clock.now }) };
}

const servers: ObservabilityServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function start(metrics: RelayerMetrics, health: Partial<HealthSources> = {}, port = 0) {
  const server = await startObservabilityServer({
    host: '127.0.0.1',
    port,
    metrics,
    health: {
      loopStalledAfterMs: STALL_BOUND_MS,
      ready: () => ({ ready: true, checks: [] }),
      ...health,
    },
  });
  servers.push(server);
  return server;
}

/** Starts a server on a free loopback port and returns a fetch bound to it. */
async function serve(metrics: RelayerMetrics, health: Partial<HealthSources> = {}) {
  const server = await start(metrics, health);
  return (path: string, init?: RequestInit) =>
    fetch(`http://127.0.0.1:${server.port}${path}`, init);
}

describe('observability HTTP server', () => {
  it('serves the Prometheus exposition on GET /metrics', async () => {
    const { metrics } = manualClock();
    metrics.setWorkerUp(true);
    const get = await serve(metrics);
    const response = await get('/metrics');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const body = await response.text();
    expect(body).toContain('# TYPE symphony_relay_worker_up gauge');
    expect(body).toContain('\nsymphony_relay_worker_up 1\n');
  });

  it('is live while the loop ticks, and answers 503 with a reason once the last tick is stale', async () => {
    const { clock, metrics } = manualClock();
    const get = await serve(metrics);
    metrics.tick();
    clock.now += STALL_BOUND_MS;
    const fresh = await get('/healthz');
    expect(fresh.status).toBe(200);
    expect(await fresh.json()).toMatchObject({ status: 'ok', lastTickAgeMs: STALL_BOUND_MS });

    clock.now += 1;
    const stale = await get('/healthz');
    expect(stale.status).toBe(503);
    expect(stale.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await stale.json()).toEqual({
      status: 'stalled',
      reason: `worker loop last ticked ${STALL_BOUND_MS + 1} ms ago (bound ${STALL_BOUND_MS} ms)`,
    });

    metrics.tick();
    expect((await get('/healthz')).status).toBe(200);
  });

  it('gives a loop that has not ticked yet the same allowance from server start', async () => {
    const { clock, metrics } = manualClock();
    const get = await serve(metrics);
    expect((await get('/healthz')).status).toBe(200);
    clock.now += STALL_BOUND_MS + 1;
    const response = await get('/healthz');
    expect(response.status).toBe(503);
    expect(((await response.json()) as { reason: string }).reason).toMatch(
      /has not ticked in the 30001 ms since start/,
    );
  });

  it('is ready only when the relayer says so, and names the failing checks', async () => {
    const { metrics } = manualClock();
    let readiness: Readiness = {
      ready: false,
      checks: [
        { name: 'database', ok: true },
        { name: 'listener', ok: false, detail: 'LISTEN outbox_pending connection is down' },
        { name: 'shutdown', ok: true },
      ],
    };
    const get = await serve(metrics, { ready: () => readiness });

    const notReady = await get('/readyz');
    expect(notReady.status).toBe(503);
    const body = (await notReady.json()) as { status: string; failed: string[]; checks: unknown[] };
    expect(body.status).toBe('not ready');
    expect(body.failed).toEqual(['listener']);
    expect(body.checks).toContainEqual({
      name: 'listener',
      ok: false,
      detail: 'LISTEN outbox_pending connection is down',
    });

    readiness = {
      ready: true,
      checks: [
        { name: 'database', ok: true },
        { name: 'listener', ok: true },
      ],
    };
    const ready = await get('/readyz');
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready' });
  });

  it('reports a readiness probe that throws or hangs as not ready instead of failing the request', async () => {
    const { metrics } = manualClock();
    const throwing = await serve(metrics, {
      ready: async () => {
        throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
      },
    });
    const thrown = await throwing('/readyz');
    expect(thrown.status).toBe(503);
    expect(await thrown.json()).toMatchObject({
      failed: ['readiness_probe'],
      checks: [
        { name: 'readiness_probe', ok: false, detail: 'connect ECONNREFUSED 127.0.0.1:5432' },
      ],
    });

    const hanging = await serve(metrics, {
      ready: () => new Promise<Readiness>(() => {}),
      readyTimeoutMs: 20,
    });
    const hung = await hanging('/readyz');
    expect(hung.status).toBe(503);
    expect(((await hung.json()) as { failed: string[] }).failed).toEqual(['readiness_probe']);
  });

  it('answers 404 for unknown paths and 405 for other methods', async () => {
    const { metrics } = manualClock();
    const get = await serve(metrics);
    expect((await get('/')).status).toBe(404);
    expect((await get('/metricsz')).status).toBe(404);
    const post = await get('/metrics', { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    expect((await get('/metrics?debug=1')).status).toBe(200);
  });

  it('names the address when the port is taken', async () => {
    const { metrics } = manualClock();
    const first = await start(metrics);
    await expect(start(metrics, {}, first.port)).rejects.toThrow(
      `observability server could not listen on 127.0.0.1:${first.port} (EADDRINUSE)`,
    );
  });
});
