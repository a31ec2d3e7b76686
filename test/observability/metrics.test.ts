import { describe, expect, it } from 'vitest';
import { RelayerMetrics } from '../../src/observability/metrics.ts';
import { populatedRelayerMetrics } from '../support/prometheus-tools.ts';

// The names are an interface shared with deploy/prometheus/alerts.yml and the README.
const EXPECTED_METRICS: Record<string, 'counter' | 'gauge' | 'histogram'> = {
  symphony_relay_items_claimed_total: 'counter',
  symphony_relay_items_completed_total: 'counter',
  symphony_relay_lease_lost_total: 'counter',
  symphony_relay_attempt_errors_total: 'counter',
  symphony_relay_retry_ceiling_reached_total: 'counter',
  symphony_relay_dispatch_duration_seconds: 'histogram',
  symphony_relay_enqueue_to_dispatch_seconds: 'histogram',
  symphony_relay_dispatch_in_flight: 'gauge',
  symphony_relay_dispatch_slots_free: 'gauge',
  symphony_relay_wakeups_total: 'counter',
  symphony_relay_leases_repaired_total: 'counter',
  symphony_relay_leases_released_total: 'counter',
  symphony_relay_queue_pending: 'gauge',
  symphony_relay_queue_due: 'gauge',
  symphony_relay_queue_leased: 'gauge',
  symphony_relay_queue_expired_leases: 'gauge',
  symphony_relay_queue_oldest_due_age_seconds: 'gauge',
  symphony_relay_queue_stats_timestamp_seconds: 'gauge',
  symphony_relay_queue_sample_estimated: 'gauge',
  symphony_relay_queue_rail_due: 'gauge',
  symphony_relay_queue_rail_oldest_due_age_seconds: 'gauge',
  symphony_relay_dispatch_paused: 'gauge',
  symphony_relay_rail_breaker_state: 'gauge',
  symphony_relay_listener_connected: 'gauge',
  symphony_relay_notifications_received_total: 'counter',
  symphony_relay_db_pool_connections: 'gauge',
  symphony_relay_db_pool_waiting_requests: 'gauge',
  symphony_relay_worker_up: 'gauge',
  symphony_relay_loop_last_tick_timestamp_seconds: 'gauge',
  symphony_relay_build_info: 'gauge',
};

/** `name{labels} value` lines of the exposition, keyed by the series (name plus labels). */
function samples(text: string): Map<string, number> {
  const result = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    result.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return result;
}

describe('RelayerMetrics', () => {
  it('exports every relayer metric with HELP and the right TYPE, even before anything happened', async () => {
    const text = await new RelayerMetrics().text();
    for (const [name, type] of Object.entries(EXPECTED_METRICS)) {
      expect(text, name).toMatch(new RegExp(`^# HELP ${name} \\S`, 'm'));
      expect(text, name).toContain(`# TYPE ${name} ${type}\n`);
    }
    const ours = [...text.matchAll(/^# TYPE (symphony_relay_\w+)/gm)].map((match) => match[1]);
    expect(ours.sort()).toEqual(Object.keys(EXPECTED_METRICS).sort());
  });

  it('registers the default process metrics unprefixed on its own registry', async () => {
    const first = new RelayerMetrics();
    const second = new RelayerMetrics();
    expect(first.registry).not.toBe(second.registry);
    const text = await first.text();
    expect(text).toContain('# TYPE process_cpu_seconds_total counter');
    expect(text).toContain('# TYPE nodejs_eventloop_lag_seconds gauge');
  });

  it('INV-METRICS-RAIL-LABELS-BOUNDED: rail types that are not configured share the label "other", however many there are', async () => {
    const metrics = new RelayerMetrics();
    metrics.initialiseSeries(['bank']);
    for (let n = 0; n < 500; n += 1) {
      metrics.claimed(`producer-chosen-${n}`, 1);
      metrics.completed(`producer-chosen-${n}`, 'dispatched', 0.01, 0.1);
      metrics.leaseLost(`producer-chosen-${n}`);
    }
    metrics.setRailQueueStats(
      Array.from({ length: 500 }, (_, n) => ({
        railType: `producer-chosen-${n}`,
        pending: 1,
        due: 1,
        oldestDueAgeSeconds: n,
      })),
    );
    const text = await metrics.text();
    const rails = new Set([...text.matchAll(/rail="([^"]*)"/g)].map((match) => match[1]));
    expect(rails).toEqual(new Set(['bank', 'other']));
    const series = samples(text);
    expect(series.get('symphony_relay_items_claimed_total{rail="other"}')).toBe(500);
    expect(series.get('symphony_relay_queue_rail_due{rail="other"}')).toBe(500);
    expect(series.get('symphony_relay_queue_rail_oldest_due_age_seconds{rail="other"}')).toBe(499);
    expect(series.get('symphony_relay_queue_rail_due{rail="bank"}')).toBe(0);
  });

  it('labels each series as the dashboards and alerts expect', async () => {
    let now = 1_700_000_000_000;
    const metrics = populatedRelayerMetrics({ clock: () => now });
    now += 5_000;
    metrics.tick();
    const series = samples(await metrics.text());

    expect(series.get('symphony_relay_items_claimed_total{rail="http"}')).toBe(3);
    for (const outcome of ['dispatched', 'retryable', 'failed']) {
      expect(
        series.get(`symphony_relay_items_completed_total{rail="http",outcome="${outcome}"}`),
      ).toBe(1);
      expect(
        series.get(
          `symphony_relay_dispatch_duration_seconds_count{rail="http",outcome="${outcome}"}`,
        ),
      ).toBe(1);
    }
    expect(
      series.get(
        'symphony_relay_dispatch_duration_seconds_bucket{le="0.005",rail="http",outcome="dispatched"}',
      ),
    ).toBe(0);
    expect(
      series.get(
        'symphony_relay_dispatch_duration_seconds_bucket{le="60",rail="http",outcome="dispatched"}',
      ),
    ).toBe(1);
    expect(series.get('symphony_relay_lease_lost_total{rail="http"}')).toBe(1);

    // End-to-end latency counts each payment once, when it reaches the rail.
    expect(series.get('symphony_relay_enqueue_to_dispatch_seconds_count{rail="http"}')).toBe(1);
    expect(series.get('symphony_relay_enqueue_to_dispatch_seconds_sum{rail="http"}')).toBe(1.5);
    expect(
      series.get('symphony_relay_enqueue_to_dispatch_seconds_bucket{le="0.01",rail="http"}'),
    ).toBe(0);
    expect(
      series.get('symphony_relay_enqueue_to_dispatch_seconds_bucket{le="3600",rail="http"}'),
    ).toBe(1);

    for (const source of ['notify', 'poll', 'scheduled_retry', 'drain', 'reconnect', 'startup']) {
      expect(series.get(`symphony_relay_wakeups_total{source="${source}"}`)).toBe(1);
    }
    expect(series.get('symphony_relay_dispatch_in_flight')).toBe(2);
    expect(series.get('symphony_relay_dispatch_slots_free')).toBe(14);
    expect(series.get('symphony_relay_leases_repaired_total')).toBe(1);
    expect(series.get('symphony_relay_leases_released_total')).toBe(2);
    expect(series.get('symphony_relay_queue_pending')).toBe(10);
    expect(series.get('symphony_relay_queue_due')).toBe(4);
    expect(series.get('symphony_relay_queue_leased')).toBe(3);
    expect(series.get('symphony_relay_queue_expired_leases')).toBe(1);
    expect(series.get('symphony_relay_queue_oldest_due_age_seconds')).toBe(12.5);
    expect(series.get('symphony_relay_queue_stats_timestamp_seconds')).toBe(1_700_000_000);
    expect(series.get('symphony_relay_listener_connected')).toBe(1);
    expect(series.get('symphony_relay_db_pool_connections{state="total"}')).toBe(4);
    expect(series.get('symphony_relay_db_pool_connections{state="idle"}')).toBe(3);
    expect(series.get('symphony_relay_db_pool_connections{state="busy"}')).toBe(1);
    expect(series.has('symphony_relay_db_pool_connections{state="waiting"}')).toBe(false);
    expect(series.get('symphony_relay_db_pool_waiting_requests')).toBe(0);
    expect(
      series.get(
        'symphony_relay_attempt_errors_total{rail="http",outcome="retryable",error_code="HTTP_503"}',
      ),
    ).toBe(1);
    expect(
      series.get(
        'symphony_relay_attempt_errors_total{rail="http",outcome="failed",error_code="TIMEOUT"}',
      ),
    ).toBe(1);
    expect(series.get('symphony_relay_retry_ceiling_reached_total{rail="http"}')).toBe(1);
    expect(series.get('symphony_relay_worker_up')).toBe(1);
    expect(series.get('symphony_relay_loop_last_tick_timestamp_seconds')).toBe(1_700_000_005);
    expect(series.get('symphony_relay_build_info{version="9.9.9-test"}')).toBe(1);
  });

  it('reads the pool on every scrape: connections by state, and waiting requests apart', async () => {
    let stats = { totalCount: 10, idleCount: 0, waitingCount: 0 };
    const metrics = new RelayerMetrics({ poolStats: () => stats });
    const read = async () => samples(await metrics.text());
    expect((await read()).get('symphony_relay_db_pool_waiting_requests')).toBe(0);
    stats = { totalCount: 10, idleCount: 4, waitingCount: 7 };
    const series = await read();
    expect(series.get('symphony_relay_db_pool_waiting_requests')).toBe(7);
    expect(series.get('symphony_relay_db_pool_connections{state="total"}')).toBe(10);
    expect(series.get('symphony_relay_db_pool_connections{state="idle"}')).toBe(4);
    expect(series.get('symphony_relay_db_pool_connections{state="busy"}')).toBe(6);
  });

  it('labels error codes only with known values: built-in, HTTP_<status>, declared by the adapter, else other', async () => {
    const metrics = new RelayerMetrics();
    metrics.initialiseSeries(['momo', 'bank']);
    metrics.declareErrorCodes('momo', ['INSUFFICIENT_FUNDS', 'bad code with spaces']);
    const codes = [
      ['momo', 'NETWORK_ERROR'],
      ['momo', 'HTTP_503'],
      ['momo', 'INSUFFICIENT_FUNDS'],
      ['momo', 'bad code with spaces'],
      ['momo', 'HTTP_9999'],
      ['momo', 'TypeError'],
      ['bank', 'INSUFFICIENT_FUNDS'],
    ] as const;
    expect(codes.map(([rail, code]) => metrics.errorCodeLabel(rail, code))).toEqual([
      'NETWORK_ERROR',
      'HTTP_503',
      'INSUFFICIENT_FUNDS',
      'other',
      'other',
      'other',
      'other',
    ]);
    for (let i = 0; i < 1000; i++) metrics.attemptFailed('momo', 'retryable', `RANDOM_${i}`);
    const series = [...samples(await metrics.text()).keys()].filter((key) =>
      key.startsWith('symphony_relay_attempt_errors_total'),
    );
    expect(series).toEqual([
      'symphony_relay_attempt_errors_total{rail="momo",outcome="retryable",error_code="other"}',
    ]);
  });

  it('reports an empty due queue as age 0 and a stopped worker as down', async () => {
    const metrics = populatedRelayerMetrics();
    metrics.setQueueStats({
      pending: 0,
      due: 0,
      leased: 0,
      expiredLeases: 0,
      oldestDueAgeSeconds: null,
    });
    metrics.setWorkerUp(false);
    metrics.setListenerConnected(false);
    const series = samples(await metrics.text());
    expect(series.get('symphony_relay_queue_oldest_due_age_seconds')).toBe(0);
    expect(series.get('symphony_relay_worker_up')).toBe(0);
    expect(series.get('symphony_relay_listener_connected')).toBe(0);
  });

  it('says whether the last queue sample estimated its larger counts (1) or counted exactly (0)', async () => {
    const metrics = new RelayerMetrics();
    expect(samples(await metrics.text()).get('symphony_relay_queue_sample_estimated')).toBe(0);
    metrics.setQueueSampleEstimated(true);
    expect(samples(await metrics.text()).get('symphony_relay_queue_sample_estimated')).toBe(1);
    metrics.setQueueSampleEstimated(false);
    expect(samples(await metrics.text()).get('symphony_relay_queue_sample_estimated')).toBe(0);
  });

  it('exports zero-valued series for every configured rail before the first event', async () => {
    const metrics = new RelayerMetrics();
    metrics.initialiseSeries(['bank', 'momo']);
    const series = samples(await metrics.text());
    for (const rail of ['bank', 'momo']) {
      expect(series.get(`symphony_relay_items_claimed_total{rail="${rail}"}`)).toBe(0);
      expect(series.get(`symphony_relay_lease_lost_total{rail="${rail}"}`)).toBe(0);
      expect(series.get(`symphony_relay_retry_ceiling_reached_total{rail="${rail}"}`)).toBe(0);
      for (const outcome of ['dispatched', 'retryable', 'failed']) {
        expect(
          series.get(`symphony_relay_items_completed_total{rail="${rail}",outcome="${outcome}"}`),
        ).toBe(0);
      }
    }
    expect(series.get('symphony_relay_wakeups_total{source="notify"}')).toBe(0);
  });

  it('counts pauses per scope and reports each breaker, unconfigured rails under "other"', async () => {
    const metrics = new RelayerMetrics();
    metrics.initialiseSeries(['bank']);
    const at = new Date();
    const pause = (scope: 'all' | 'rail' | 'participant', target: string) =>
      ({ scope, target, reason: 'r', pausedBy: 'ops', pausedAt: at }) as const;
    metrics.setPauses([
      pause('rail', 'bank'),
      pause('participant', 'p1'),
      pause('participant', 'p2'),
    ]);
    const rail = (railType: string, breakerState: 'closed' | 'half_open' | 'open') => ({
      railType,
      maxPerSecond: null,
      ordered: false,
      breakerThreshold: 3,
      breakerCooldownSeconds: 30,
      breakerMaxCooldownSeconds: 600,
      breakerState,
      consecutiveFailures: 0,
      openUntil: null,
      cooldownSeconds: null,
      blockedParticipants: 0,
      updatedBy: 'ops',
      updatedAt: at,
    });
    metrics.setRailControls([rail('bank', 'half_open'), rail('x', 'closed'), rail('y', 'open')]);
    const text = await metrics.text();
    expect(text).toMatch(/^symphony_relay_dispatch_paused\{scope="all"\} 0$/m);
    expect(text).toMatch(/^symphony_relay_dispatch_paused\{scope="rail"\} 1$/m);
    expect(text).toMatch(/^symphony_relay_dispatch_paused\{scope="participant"\} 2$/m);
    expect(text).toMatch(/^symphony_relay_rail_breaker_state\{rail="bank"\} 1$/m);
    expect(text).toMatch(/^symphony_relay_rail_breaker_state\{rail="other"\} 2$/m);
  });

  it('defaults build_info to the package version', async () => {
    const { default: manifest } = await import('../../package.json', { with: { type: 'json' } });
    const series = samples(await new RelayerMetrics().text());
    expect(series.get(`symphony_relay_build_info{version="${manifest.version}"}`)).toBe(1);
  });
});
