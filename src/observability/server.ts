import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RelayerMetrics } from './metrics.ts';

export interface ReadinessCheck {
  /** Short stable name an operator can grep for, e.g. `database`, `listener`, `shutdown`. */
  name: string;
  ok: boolean;
  detail?: string;
}

export interface Readiness {
  ready: boolean;
  checks?: ReadinessCheck[];
}

export interface HealthSources {
  /** /healthz fails when the worker loop has not ticked for longer than this. */
  loopStalledAfterMs: number;
  /** The relayer's view: database reachable, listener connected (or poll-only), not shutting down. */
  ready(): Readiness | Promise<Readiness>;
  /** A readiness probe that hangs is reported as not ready after this long (default 2000 ms). */
  readyTimeoutMs?: number;
}

export interface ObservabilityServerOptions {
  host: string;
  /** 0 picks a free port; the bound port is returned. */
  port: number;
  metrics: RelayerMetrics;
  health: HealthSources;
}

export interface ObservabilityServer {
  /** The address actually bound, as the socket reports it. */
  host: string;
  port: number;
  close(): Promise<void>;
}

const DEFAULT_READY_TIMEOUT_MS = 2000;

/**
 * The scrape and probe endpoints: GET /metrics, /healthz (liveness: the loop is ticking),
 * /readyz (readiness: the relayer can do work). Everything else is 404.
 */
export async function startObservabilityServer(
  options: ObservabilityServerOptions,
): Promise<ObservabilityServer> {
  const { metrics, health } = options;
  // Before the first tick the loop gets the same allowance from server start, so a slow
  // start is not reported as a hung worker.
  const startedAt = metrics.now();

  const routes: Record<string, (res: ServerResponse) => Promise<void>> = {
    '/metrics': async (res) => {
      const body = await metrics.text();
      send(res, 200, metrics.contentType, body);
    },
    '/healthz': async (res) => {
      const liveness = checkLiveness(metrics, health.loopStalledAfterMs, startedAt);
      sendJson(res, liveness.alive ? 200 : 503, liveness.body);
    },
    '/readyz': async (res) => {
      const readiness = await probeReadiness(health);
      const failed = (readiness.checks ?? [])
        .filter((check) => !check.ok)
        .map((check) => check.name);
      if (readiness.ready) {
        sendJson(res, 200, { status: 'ready', checks: readiness.checks ?? [] });
      } else {
        sendJson(res, 503, {
          status: 'not ready',
          failed: failed.length > 0 ? failed : ['unspecified'],
          checks: readiness.checks ?? [],
        });
      }
    },
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const route = routes[path];
    if (!route) {
      sendJson(res, 404, { error: `no such endpoint ${path}; try /metrics, /healthz or /readyz` });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      sendJson(res, 405, { error: `${req.method} is not supported on ${path}; use GET` });
      return;
    }
    route(res).catch((error: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: `${path} failed: ${errorMessage(error)}` });
      else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      reject(
        new Error(
          `observability server could not listen on ${options.host}:${options.port} (${error.code ?? error.message}); ` +
            'choose another metrics host/port or stop whatever holds it',
          { cause: error },
        ),
      );
    };
    server.once('error', onError);
    server.listen(options.port, options.host, () => {
      server.off('error', onError);
      resolve();
    });
  });

  const { address, port } = server.address() as AddressInfo;
  return {
    host: address,
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // Prometheus keeps scrape connections alive; without this close() waits for them.
        server.closeAllConnections();
      }),
  };
}

function checkLiveness(
  metrics: RelayerMetrics,
  loopStalledAfterMs: number,
  startedAt: number,
): { alive: boolean; body: Record<string, unknown> } {
  const now = metrics.now();
  const lastTick = metrics.lastTickAt;
  const sinceMs = now - (lastTick ?? startedAt);
  if (sinceMs <= loopStalledAfterMs) {
    return {
      alive: true,
      body: { status: 'ok', lastTickAgeMs: lastTick === undefined ? null : sinceMs },
    };
  }
  const reason =
    lastTick === undefined
      ? `worker loop has not ticked in the ${sinceMs} ms since start (bound ${loopStalledAfterMs} ms)`
      : `worker loop last ticked ${sinceMs} ms ago (bound ${loopStalledAfterMs} ms)`;
  return { alive: false, body: { status: 'stalled', reason } };
}

async function probeReadiness(health: HealthSources): Promise<Readiness> {
  const timeoutMs = health.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<Readiness>((resolve) => {
    timer = setTimeout(
      () =>
        resolve({
          ready: false,
          checks: [
            {
              name: 'readiness_probe',
              ok: false,
              detail: `readiness checks did not answer within ${timeoutMs} ms`,
            },
          ],
        }),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([Promise.resolve().then(() => health.ready()), timedOut]);
  } catch (error) {
    return {
      ready: false,
      checks: [{ name: 'readiness_probe', ok: false, detail: errorMessage(error) }],
    };
  } finally {
    clearTimeout(timer);
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(body));
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Cache-Control': 'no-store' });
  res.end(body);
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
