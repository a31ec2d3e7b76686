import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueItems } from '../support/outbox-fixtures.ts';
import {
  freePort,
  startBinary,
  WaitAbandoned,
  waitUntil,
  type RunningProcess,
} from '../support/processes.ts';
import {
  explain,
  KNOWN_PROM_CLIENT_LINT,
  lintProblems,
  PROMETHEUS,
  promtool,
  REPO_ROOT,
} from '../support/prometheus-tools.ts';
import {
  relayerDatabase,
  spawnRelayer,
  waitForAllTerminal,
  waitForLog,
  type RelayerProcess,
} from '../support/relayer.ts';

interface QueryResponse {
  status: string;
  data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

interface RulesResponse {
  status: string;
  data: { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> };
}

// Every item ends DISPATCHED, some after retries (reproducibly, thanks to the seed), so the
// error-code series exist for the dashboard's panels too.
const SANDBOX_WITH_RETRIES = JSON.stringify({
  sandbox: {
    type: 'sandbox',
    latencyMs: [1, 3],
    outcomes: { DISPATCHED: 0.7, RETRYABLE: 0.3, FAILED: 0 },
    seed: 11,
  },
});

interface DashboardPanel {
  title: string;
  type: string;
  targets?: Array<{ expr: string }>;
}

/** A panel query as Grafana sends it, with its variables at their defaults. */
function asGrafanaSendsIt(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$rail', '.*');
}

// A real relayer process serving its live /metrics, checked by promtool and scraped by a
// real Prometheus with the shipped alert rules loaded: names, content type and rule
// expressions are checked end to end.
describe('a real Prometheus scraping a running relayer', () => {
  let workDir: string;
  let relayer: RelayerProcess;
  let metricsPort: number;
  let prometheus: RunningProcess;
  let apiBase: string;

  beforeAll(async () => {
    const target = await relayerDatabase();
    metricsPort = await freePort();
    relayer = spawnRelayer(
      target.env({
        SYMPHONY_HTTP_HOST: '127.0.0.1',
        SYMPHONY_HTTP_PORT: String(metricsPort),
        SYMPHONY_RAILS: SANDBOX_WITH_RETRIES,
        LOG_LEVEL: 'info',
      }),
    );
    await waitForLog(relayer, '"event":"worker_started"');
    await enqueueItems(target.db.owner, 50, { prefix: 'scrape' });
    await waitForAllTerminal(target.db, 50);

    workDir = await mkdtemp(join(tmpdir(), 'symphony-prometheus-'));
    const configFile = join(workDir, 'prometheus.yml');
    await writeFile(
      configFile,
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        `rule_files: [${JSON.stringify(join(REPO_ROOT, 'deploy/prometheus/alerts.yml'))}]`,
        'scrape_configs:',
        '  - job_name: symphony-relay',
        `    static_configs: [{ targets: ["127.0.0.1:${metricsPort}"] }]`,
        '',
      ].join('\n'),
    );
    const port = await freePort();
    apiBase = `http://127.0.0.1:${port}`;
    prometheus = await startBinary(PROMETHEUS, [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(workDir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ]);
  });

  afterAll(async () => {
    await prometheus?.stop();
    relayer?.child.kill('SIGTERM');
    await relayer?.exited;
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  /** A prometheus that exited will never answer: stop waiting and show its output. */
  function assertPrometheusRunning(): void {
    if (prometheus.child.exitCode !== null || prometheus.child.signalCode !== null) {
      throw new WaitAbandoned(
        `prometheus exited (${prometheus.child.exitCode ?? prometheus.child.signalCode}):\n${prometheus.output()}`,
      );
    }
  }

  async function api<T>(path: string): Promise<T> {
    const response = await fetch(`${apiBase}${path}`);
    if (!response.ok) throw new Error(`${path} answered ${response.status}: ${await response.text()}`);
    return (await response.json()) as T;
  }

  async function query(expression: string) {
    return waitUntil(
      async () => {
        assertPrometheusRunning();
        const response = await api<QueryResponse>(`/api/v1/query?query=${encodeURIComponent(expression)}`);
        return response.data.result.length > 0 ? response.data.result : undefined;
      },
      { description: `prometheus at ${apiBase} to answer ${expression}`, attempts: 120, intervalMs: 500 },
    );
  }

  it('serves live /metrics that pass promtool check metrics', async () => {
    const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text).toMatch(/symphony_relay_items_completed_total\{rail="sandbox",outcome="dispatched"\} 50/);
    const result = await promtool(['check', 'metrics'], text);
    const unexpected = lintProblems(result).filter((problem) => !KNOWN_PROM_CLIENT_LINT.includes(problem));
    expect(unexpected, explain(result)).toEqual([]);
  });

  it('is scraped: Prometheus answers worker_up and the dispatched count through its HTTP API', async () => {
    const up = await query('symphony_relay_worker_up');
    expect(up[0]?.metric).toMatchObject({ job: 'symphony-relay', instance: `127.0.0.1:${metricsPort}` });
    expect(up[0]?.value[1]).toBe('1');
    const dispatched = await query('sum(symphony_relay_items_completed_total{outcome="dispatched"})');
    expect(dispatched[0]?.value[1]).toBe('50');
  });

  it('evaluates every shipped alert rule against the scraped series without errors', async () => {
    const rules = await waitUntil(
      async () => {
        assertPrometheusRunning();
        const response = await api<RulesResponse>('/api/v1/rules');
        const all = response.data.groups.flatMap((group) => group.rules);
        return all.length > 0 && all.every((rule) => rule.health !== 'unknown') ? all : undefined;
      },
      { description: 'prometheus to evaluate the alert rules once', attempts: 120, intervalMs: 500 },
    );
    expect(rules.map((rule) => rule.name)).toContain('SymphonyRelayNoWorkerUp');
    expect(rules.filter((rule) => rule.health !== 'ok')).toEqual([]);
  });
  it("answers every panel query of the Grafana dashboard without error, and no panel is empty", async () => {
    const dashboard = JSON.parse(
      await readFile(join(REPO_ROOT, 'deploy/grafana/dashboards/symphony-relay.json'), 'utf8'),
    ) as { panels: DashboardPanel[] };
    const queries = dashboard.panels.flatMap((panel) =>
      (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: asGrafanaSendsIt(target.expr) })),
    );
    expect(queries.length).toBeGreaterThanOrEqual(20);
    await query('symphony_relay_worker_up');
    // A query Prometheus refuses fails at once, naming the panel.
    for (const { panel, expr } of queries) {
      const response = await fetch(`${apiBase}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = (await response.json()) as { status: string; error?: string };
      expect(body, `panel "${panel}": ${expr}`).toMatchObject({ status: 'success' });
    }
    // Then every query must have series: an empty panel means a wrong metric or label name.
    for (const { expr } of queries) {
      expect((await query(expr)).length).toBeGreaterThan(0);
    }
    const rails = await query('count by (rail) (symphony_relay_items_claimed_total)');
    expect(rails.map((series) => series.metric.rail)).toEqual(['sandbox']);
  });
});
