import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runBinary } from '../support/processes.ts';
import { DOCKER_COMPOSE, populatedRelayerMetrics, REPO_ROOT } from '../support/prometheus-tools.ts';

interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Array<{ expr: string; datasource?: { uid: string } }>;
}

const read = (path: string) => readFile(join(REPO_ROOT, path), 'utf8');

// The dashboard's queries run against a real Prometheus in prometheus-scrape.test.ts; these
// checks catch what Grafana would only show as a broken panel.
describe('deploy/grafana', () => {
  it('has a dashboard whose panels all use the provisioned Prometheus datasource', async () => {
    const dashboard = JSON.parse(await read('deploy/grafana/dashboards/symphony-relay.json')) as {
      uid: string;
      panels: Panel[];
    };
    const datasource = await read('deploy/grafana/provisioning/datasources/prometheus.yml');
    const uid = /^\s+uid: (\S+)$/m.exec(datasource)?.[1];
    expect(uid).toBe('prometheus');
    const panels = dashboard.panels.filter((panel) => panel.type !== 'row');
    expect(new Set(dashboard.panels.map((panel) => panel.id)).size).toBe(dashboard.panels.length);
    for (const panel of panels) {
      expect(panel.datasource?.uid, panel.title).toBe(uid);
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
    }
  });

  it('queries only metrics the relayer exports', async () => {
    const text = await read('deploy/grafana/dashboards/symphony-relay.json');
    const exported = new Set(
      (await populatedRelayerMetrics().registry.getMetricsAsJSON()).map((metric) => metric.name),
    );
    const used = new Set(
      [...text.matchAll(/symphony_relay_[a-z_]+/g)].map(([name]) =>
        name.replace(/_(bucket|sum|count)$/, ''),
      ),
    );
    expect([...used].filter((name) => !exported.has(name))).toEqual([]);
    for (const needed of [
      'symphony_relay_queue_pending',
      'symphony_relay_queue_oldest_due_age_seconds',
      'symphony_relay_items_completed_total',
      'symphony_relay_attempt_errors_total',
      'symphony_relay_dispatch_duration_seconds',
      'symphony_relay_enqueue_to_dispatch_seconds',
      'symphony_relay_lease_lost_total',
      'symphony_relay_leases_repaired_total',
      'symphony_relay_listener_connected',
    ]) {
      expect(used, needed).toContain(needed);
    }
  });

  it('is provisioned in the compose stack, read-only, with its admin password from a secret file', async () => {
    const result = await runBinary(
      DOCKER_COMPOSE,
      ['--env-file', join(REPO_ROOT, 'deploy/.env.example'), '-f', join(REPO_ROOT, 'docker-compose.yml'), 'config'],
      { cwd: REPO_ROOT },
    );
    expect(result.code, result.stderr).toBe(0);
    const grafana = result.stdout.slice(result.stdout.indexOf('\n  grafana:'));
    // docker-compose 1.x renders short volume syntax: host:container:mode.
    expect(grafana).toMatch(/- \S+\/deploy\/grafana\/provisioning:\/etc\/grafana\/provisioning:ro\n/);
    expect(grafana).toMatch(/- \S+\/deploy\/grafana\/dashboards:\/etc\/grafana\/dashboards:ro\n/);
    expect(grafana).toContain(
      'GF_SECURITY_ADMIN_PASSWORD__FILE: /run/secrets/grafana-admin-password',
    );
    expect(grafana).not.toMatch(/GF_SECURITY_ADMIN_PASSWORD:/);
    const provider = await read('deploy/grafana/provisioning/dashboards/symphony-relay.yml');
    expect(provider).toContain('path: /etc/grafana/dashboards');
  });
});
