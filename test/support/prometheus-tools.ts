import {
  RelayerMetrics,
  WAKEUP_SOURCES,
  type RelayerMetricsOptions,
} from '../../src/observability/metrics.ts';
import { REPO_ROOT } from './paths.ts';
import { runBinary, type BinaryRequirement, type RunResult } from './processes.ts';

export { REPO_ROOT } from './paths.ts';

const PROMETHEUS_PACKAGE =
  'install the Debian package `prometheus` (apt-get install -y prometheus; .ci/run does it) — the deploy tests need it';

export const PROMTOOL: BinaryRequirement = { binary: 'promtool', installHint: PROMETHEUS_PACKAGE };
export const PROMETHEUS: BinaryRequirement = {
  binary: 'prometheus',
  installHint: PROMETHEUS_PACKAGE,
};
export const DOCKER_COMPOSE: BinaryRequirement = {
  binary: 'docker-compose',
  installHint:
    'install the Debian package `docker-compose` (apt-get install -y docker-compose; .ci/run does it)',
};

/**
 * A RelayerMetrics that has seen a bit of everything, so every labelled series exists in
 * the exposition (a labelled metric with no observations prints only HELP and TYPE).
 */
export function populatedRelayerMetrics(options: RelayerMetricsOptions = {}): RelayerMetrics {
  const metrics = new RelayerMetrics({
    version: '9.9.9-test',
    poolStats: () => ({ totalCount: 4, idleCount: 3, waitingCount: 0 }),
    ...options,
  });
  metrics.initialiseSeries(['http']);
  metrics.setWorkerUp(true);
  metrics.tick();
  metrics.setListenerConnected(true);
  metrics.claimed('http', 3);
  metrics.completed('http', 'dispatched', 0.12, 1.5);
  metrics.completed('http', 'retryable', 2.5);
  metrics.completed('http', 'failed', 0.01);
  metrics.leaseLost('http');
  metrics.attemptFailed('http', 'retryable', 'HTTP_503');
  metrics.attemptFailed('http', 'failed', 'TIMEOUT', true);
  for (const source of WAKEUP_SOURCES) metrics.wakeup(source);
  metrics.setSlots(2, 14);
  metrics.repaired(1);
  metrics.released(2);
  metrics.setQueueStats({
    pending: 10,
    due: 4,
    leased: 3,
    expiredLeases: 1,
    oldestDueAgeSeconds: 12.5,
  });
  metrics.setRailQueueStats([
    { railType: 'http', pending: 6, due: 3, oldestDueAgeSeconds: 2 },
    { railType: 'unserved-a', pending: 3, due: 1, oldestDueAgeSeconds: 12.5 },
    { railType: 'unserved-b', pending: 1, due: 0, oldestDueAgeSeconds: null },
  ]);
  return metrics;
}

// prom-client's default Node.js metrics export these gauges with a `_total` suffix, which
// promtool's linter flags. They are not ours to rename; anything else flagged is a failure.
export const KNOWN_PROM_CLIENT_LINT = [
  'nodejs_active_handles_total non-counter metrics should not have "_total" suffix',
  'nodejs_active_requests_total non-counter metrics should not have "_total" suffix',
  'nodejs_active_resources_total non-counter metrics should not have "_total" suffix',
];

export const promtool = (args: string[], input?: string) =>
  runBinary(PROMTOOL, args, { cwd: REPO_ROOT, input });

export function explain(result: RunResult): string {
  return `promtool exited ${result.code}:\n${result.stdout}\n${result.stderr}`;
}

export function lintProblems(result: RunResult): string[] {
  return `${result.stdout}\n${result.stderr}`
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
}
