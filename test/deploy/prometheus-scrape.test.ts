import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startObservabilityServer, type ObservabilityServer } from '../../src/observability/server.ts';
import { freePort, startBinary, waitUntil, type RunningProcess } from '../support/processes.ts';
import { PROMETHEUS, REPO_ROOT, populatedRelayerMetrics } from '../support/prometheus-tools.ts';

interface QueryResponse {
  status: string;
  data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

interface RulesResponse {
  status: string;
  data: { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> };
}

// A real Prometheus scraping a real metrics endpoint over loopback, with the shipped alert
// rules loaded, so names, content type and rule expressions are checked end to end.
describe('a real Prometheus scraping the relayer', () => {
  let workDir: string;
  let target: ObservabilityServer;
  let prometheus: RunningProcess;
  let apiBase: string;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'symphony-prometheus-'));
    const metrics = populatedRelayerMetrics();
    target = await startObservabilityServer({
      host: '127.0.0.1',
      port: 0,
      metrics,
      health: { loopStalledAfterMs: 60_000, ready: () => ({ ready: true }) },
    });

    const configFile = join(workDir, 'prometheus.yml');
    await writeFile(
      configFile,
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        `rule_files: [${JSON.stringify(join(REPO_ROOT, 'deploy/prometheus/alerts.yml'))}]`,
        'scrape_configs:',
        '  - job_name: symphony-relay',
        `    static_configs: [{ targets: ["127.0.0.1:${target.port}"] }]`,
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
    await target?.close();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  async function api<T>(path: string): Promise<T> {
    const response = await fetch(`${apiBase}${path}`);
    if (!response.ok) throw new Error(`${path} answered ${response.status}: ${await response.text()}`);
    return (await response.json()) as T;
  }

  it('scrapes symphony_relay_worker_up from the target', async () => {
    const query = encodeURIComponent('symphony_relay_worker_up');
    const result = await waitUntil(
      async () => {
        if (prometheus.child.exitCode !== null) {
          throw new Error(`prometheus exited with ${prometheus.child.exitCode}:\n${prometheus.output()}`);
        }
        const response = await api<QueryResponse>(`/api/v1/query?query=${query}`);
        return response.data.result.length > 0 ? response.data.result : undefined;
      },
      { description: `prometheus at ${apiBase} to return symphony_relay_worker_up`, attempts: 120, intervalMs: 500 },
    );
    expect(result).toHaveLength(1);
    expect(result[0]?.metric).toMatchObject({ job: 'symphony-relay', instance: `127.0.0.1:${target.port}` });
    expect(result[0]?.value[1]).toBe('1');
  });

  it('evaluates every shipped alert rule against the scraped series without errors', async () => {
    const rules = await waitUntil(
      async () => {
        const response = await api<RulesResponse>('/api/v1/rules');
        const all = response.data.groups.flatMap((group) => group.rules);
        return all.length > 0 && all.every((rule) => rule.health !== 'unknown') ? all : undefined;
      },
      { description: 'prometheus to evaluate the alert rules once', attempts: 120, intervalMs: 500 },
    );
    expect(rules.map((rule) => rule.name)).toContain('SymphonyRelayNoWorkerUp');
    expect(rules.filter((rule) => rule.health !== 'ok')).toEqual([]);
  });
});
