import type { RelayerMetrics } from '../observability/metrics.ts';

interface Totals {
  dispatched: number;
  retryable: number;
  failed: number;
  pending: number;
}

async function readTotals(metrics: RelayerMetrics): Promise<Totals> {
  const totals: Totals = { dispatched: 0, retryable: 0, failed: 0, pending: 0 };
  for (const metric of await metrics.registry.getMetricsAsJSON()) {
    if (metric.name === 'symphony_relay_items_completed_total') {
      for (const { labels, value } of metric.values) {
        const outcome = labels.outcome as keyof Totals;
        if (outcome in totals) totals[outcome] += value;
      }
    } else if (metric.name === 'symphony_relay_queue_pending') {
      totals.pending = metric.values[0]?.value ?? 0;
    }
  }
  return totals;
}

/** The human-readable heartbeat of `npm start`: one line every few seconds on stderr. */
export function startProgressReporter(metrics: RelayerMetrics, everyMs: number): { stop(): void } {
  // The first line's rate counts from the start, not from nothing (it read 0.0/s before).
  let previous: Totals = { dispatched: 0, retryable: 0, failed: 0, pending: 0 };
  let previousAt = Date.now();
  void readTotals(metrics).then((baseline) => {
    previous = baseline;
  });
  const timer = setInterval(() => {
    void readTotals(metrics).then((now) => {
      const at = Date.now();
      const rate = ((now.dispatched - previous.dispatched) * 1000) / Math.max(at - previousAt, 1);
      previous = now;
      previousAt = at;
      process.stderr.write(
        `progress: dispatched=${now.dispatched} retried=${now.retryable} failed=${now.failed} ` +
          `rate=${rate.toFixed(1)}/s pending=${now.pending}\n`,
      );
    });
  }, everyMs);
  return { stop: () => clearInterval(timer) };
}
