import { loadConfig, requireDatabaseUrl, type RelayerConfig } from '../config.ts';
import { createPool } from '../db/pool.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import { RelayerMetrics } from '../observability/metrics.ts';
import { startObservabilityServer, type ObservabilityServer } from '../observability/server.ts';
import { buildRailRegistry } from '../rails/registry.ts';
import {
  assertActivePolicy,
  assertActsAsRuntimeRole,
  assertWithinOperatorLimits,
} from '../relayer/boot-checks.ts';
import { Relayer, type ShutdownReport } from '../relayer/relayer.ts';

export interface Runtime {
  config: RelayerConfig;
  logger: Logger;
  metrics: RelayerMetrics;
  relayer: Relayer;
  server: ObservabilityServer | undefined;
  stop(): Promise<ShutdownReport>;
}

/** Connections beyond the dispatch slots: one claim, one repair, one queue-stats sample. */
const BACKGROUND_CONNECTIONS = 3;
/**
 * Every relayer statement is short (claim, complete, repair, statistics); one running this
 * long is stuck behind something, and failing it lets the loop retry and /healthz tell.
 */
const STATEMENT_TIMEOUT_MS = 30_000;
/** Completions are short transactions; more connections than this only add contention. */
const MAX_COMPLETION_CONNECTIONS = 16;

/**
 * Everything `symphony-relay run` starts, in order, failing closed at each step:
 * identity (member of the runtime role, not a superuser), an ACTIVE policy, the rails,
 * the relayer, then the probe/metrics endpoint.
 */
export async function startRuntime(
  env: NodeJS.ProcessEnv = process.env,
  logger?: Logger,
): Promise<Runtime> {
  const config = loadConfig(env);
  const databaseUrl = requireDatabaseUrl(config);
  const log = (logger ?? createLogger({ level: config.logLevel, name: 'symphony-relay' })).child({
    workerId: config.workerId,
  });
  const rails = buildRailRegistry(config.rails, config.railsSource);
  await assertActsAsRuntimeRole(databaseUrl, config.dbRole);
  const pool = createPool({
    connectionString: databaseUrl,
    applicationName: `symphony-relay ${config.workerId}`,
    max: Math.min(config.concurrency, MAX_COMPLETION_CONNECTIONS) + BACKGROUND_CONNECTIONS,
    actAs: config.dbRole,
    statementTimeoutMs: STATEMENT_TIMEOUT_MS,
  });
  pool.on('error', (error) =>
    log.error(
      { event: 'pool_error', err: { message: error.message } },
      'idle database connection failed',
    ),
  );
  let retry = config.retry;
  try {
    const policy = await assertActivePolicy(pool);
    log.info({ event: 'policy_checked', policyVersion: policy.version }, 'ACTIVE policy found');
    const limits = await assertWithinOperatorLimits(pool, { leaseSeconds: config.leaseSeconds });
    // The database refuses a longer delay (22023); the operator's limit wins over ours.
    const maxDelayMs = limits.maxRetryDelaySeconds * 1000;
    if (retry.maxMs > maxDelayMs) {
      log.info(
        { event: 'retry_max_capped', configuredMs: retry.maxMs, limitMs: maxDelayMs },
        'SYMPHONY_RETRY_MAX_MS is above outbox_limits.max_retry_delay_seconds; using the limit',
      );
      retry = { ...retry, maxMs: maxDelayMs };
    }
  } catch (error) {
    await pool.end();
    throw error;
  }
  const metrics = new RelayerMetrics({ poolStats: () => pool });
  metrics.initialiseSeries(rails.railTypes());
  const relayer = new Relayer({
    pool,
    listenConnectionString: config.pollOnly ? null : databaseUrl,
    workerId: config.workerId,
    concurrency: config.concurrency,
    batchSize: config.batchSize,
    leaseSeconds: config.leaseSeconds,
    dispatchTimeoutMs: config.dispatchTimeoutMs,
    pollIntervalMs: config.pollIntervalMs,
    repairIntervalMs: config.repairIntervalMs,
    repairBatchSize: config.repairBatchSize,
    queueStatsIntervalMs: config.queueStatsIntervalMs,
    shutdownGraceMs: config.shutdownGraceMs,
    retry,
    completionBatching: config.completionBatch,
    rails,
    logger: log,
    metrics,
  });
  const server =
    config.http.port === 0
      ? undefined
      : await startObservabilityServer({
          host: config.http.host,
          port: config.http.port,
          metrics,
          health: {
            // An idle worker still wakes on every poll; three missed polls mean the loop is stuck.
            loopStalledAfterMs: Math.max(3 * config.pollIntervalMs, 30_000),
            ready: () => relayer.readiness(),
          },
        });
  if (server)
    log.info({ event: 'http_listening', port: server.port }, 'metrics and probes listening');
  await relayer.start();
  return {
    config,
    logger: log,
    metrics,
    relayer,
    server,
    async stop() {
      const report = await relayer.stop();
      await server?.close();
      await rails.close();
      await pool.end();
      return report;
    },
  };
}

/**
 * First SIGTERM/SIGINT: graceful stop (readiness turns false at once, in-flight work finishes
 * within the grace period, unstarted leases are released). A second signal exits at once.
 */
export function stopOnSignals(stop: () => Promise<void>, logger: Logger): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ event: 'forced_exit', signal }, 'second signal: exiting immediately');
      process.exit(130);
    }
    stopping = true;
    logger.info({ event: 'signal_received', signal }, 'shutting down gracefully');
    stop().then(
      () => process.exit(0),
      (error: Error) => {
        logger.error(
          { event: 'shutdown_failed', err: { message: error.message } },
          'shutdown failed',
        );
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
