import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  explain,
  KNOWN_PROM_CLIENT_LINT,
  lintProblems,
  populatedRelayerMetrics,
  promtool,
  REPO_ROOT,
} from '../support/prometheus-tools.ts';

const PROMETHEUS_DIR = join(REPO_ROOT, 'deploy/prometheus');

describe('Prometheus deployment assets', () => {
  it('prometheus.yml is a valid configuration and its rule files load', async () => {
    const result = await promtool(['check', 'config', join(PROMETHEUS_DIR, 'prometheus.yml')]);
    expect(result.code, explain(result)).toBe(0);
    expect(result.stdout).toContain('SUCCESS: 1 rule files found');
  });

  it('alerts.yml holds valid rules', async () => {
    const result = await promtool(['check', 'rules', join(PROMETHEUS_DIR, 'alerts.yml')]);
    expect(result.code, explain(result)).toBe(0);
  });

  it('every alert fires in its scenario, with its severity and rendered annotations, and stays quiet when healthy', async () => {
    const result = await promtool(['test', 'rules', join(PROMETHEUS_DIR, 'alerts.test.yml')]);
    expect(result.code, explain(result)).toBe(0);
  });

  it('the relayer metrics pass promtool check metrics', async () => {
    const text = await populatedRelayerMetrics().text();
    const ours = text
      .split('\n')
      .filter((line) => /^(# (HELP|TYPE) )?symphony_relay_/.test(line))
      .join('\n');
    const result = await promtool(['check', 'metrics'], `${ours}\n`);
    expect(result.code, explain(result)).toBe(0);
  });

  it('the full exposition, process metrics included, has no lint problems beyond known prom-client names', async () => {
    const result = await promtool(['check', 'metrics'], await populatedRelayerMetrics().text());
    const unexpected = lintProblems(result).filter((problem) => !KNOWN_PROM_CLIENT_LINT.includes(problem));
    expect(unexpected, explain(result)).toEqual([]);
    expect([0, 3], explain(result)).toContain(result.code);
  });
});
