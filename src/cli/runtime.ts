import { loadConfig, requireDatabaseUrl, type RelayerConfig } from '../config.ts';
import { describeConnectionFailure } from '../db/connection-failure.ts';
import { combinedPoolStats, createPool, logPoolTransitions, openConnections } from '../db/pool.ts';
import { warmUpClaims, warmUpCompletions } from '../db/outbox.ts';
import { EXECUTOR_STATEMENT_TIMEOUT } from '../db/roles.ts';
import { createLogger, redactUrl, type Logger } from '../observability/logger.ts';
import { RelayerMetrics } from '../observability/metrics.ts';
import { startObservabilityServer, type ObservabilityServer } from '../observability/server.ts';
import { Tracing } from '../observability/tracing.ts';
import type { RailAdapter } from '../rails/rail.ts';
import { loadRailRegistry } from '../rails/registry.ts';
import {
  assertActivePolicy,
  assertActsAsRuntimeRole,
  assertWithinOperatorLimits,
  BootCheckError,
} from '../relayer/boot-checks.ts';
import { MAX_COMPLETION_BATCHES_IN_FLIGHT } from '../relayer/completer.ts';
import {
  MAX_CLAIMS_IN_FLIGHT,
  Relayer,
  type RelayerPools,
  type ShutdownReport,
} from '../relayer/relayer.ts';

export interface Runtime {
  config: RelayerConfig;
  logger: Logger;
  metrics: RelayerMetrics;
  relayer: Relayer;
  server: ObservabilityServer | undefined;
  /** The rail types this worker claims (configured and given in code). */
  railTypes: string[];
  stop(): Promise<ShutdownReport>;
}

export interface RuntimeOptions {
  /** Adapters built in the caller's own code, keyed by rail_type, next to SYMPHONY_RAILS. */
  adapters?: Record<string, RailAdapter>;
}

/**
 * Connections beyond claims and completions, shared by the repair and the queue sample (each
 * a statement or two, once per interval). One each cost every start 35-44 ms of CPU for a
 * connection idle almost all the time (issue 9).
 */
const BACKGROUND_CONNECTIONS = 1;
/** Per-item completions (batching off) are short transactions; more only add contention. */
const MAX_SINGLE_COMPLETION_CONNECTIONS = 16;

/**
 * The connections of each of a relayer's pools (see RelayerPools): one per claim in flight,
 * one per completion batch in flight (per completion when batching is off, up to 16), and
 * one for repair and the queue sample.
 */
export function relayerPoolSizes(
  config: Pick<RelayerConfig, 'concurrency' | 'completionBatch'>,
): Record<keyof RelayerPools, number> {
  return {
    claims: MAX_CLAIMS_IN_FLIGHT,
    completions: config.completionBatch
      ? MAX_COMPLETION_BATCHES_IN_FLIGHT
      : Math.min(config.concurrency, MAX_SINGLE_COMPLETION_CONNECTIONS),
    background: BACKGROUND_CONNECTIONS,
  };
}

/**
 * Pool connections one relayer opens at most, all its pools together (plus one LISTEN
 * connection unless poll-only). Independent of SYMPHONY_CONCURRENCY when batching is on:
 * 1 + 2 + 1 = 4.
 */
export function relayerPoolSize(config: Pick<RelayerConfig, 'concurrency' | 'completionBatch'>) {
  const sizes = relayerPoolSizes(config);
  return sizes.claims + sizes.completions + sizes.background;
}

/**
 * Everything `symphony-relay run` starts, in order, failing closed at each step:
 * identity (acts as the runtime role, not a superuser), an ACTIVE policy, the rails, the
 * probe/metrics endpoint, then the relayer. A failure at any step stops whatever had
 * started and rejects with one line saying what to do, so the process exits at once.
 */
export async function startRuntime(
  env: NodeJS.ProcessEnv = process.env,
  logger?: Logger,
  options: RuntimeOptions = {},
): Promise<Runtime> {
  const config = loadConfig(env);
  const databaseUrl = requireDatabaseUrl(config);
  const log = (logger ?? createLogger({ level: config.logLevel, name: 'symphony-relay' })).child({
    workerId: config.workerId,
  });
  const inCode = Object.keys(options.adapters ?? {}).length > 0;
  // The sandbox default is for a bare `run`; rails given in code replace it, never join it.
  const configured = inCode && config.railsSource === 'default' ? {} : config.rails;
  const rails = await loadRailRegistry(configured, {
    source: config.railsSource === 'default' ? 'SYMPHONY_RAILS' : config.railsSource,
    logger: log,
    adapters: options.adapters,
  });
  const started: (() => Promise<unknown>)[] = [() => rails.close()];
  const undo = async () => {
    for (const stop of started.reverse()) await stop().catch(() => undefined);
  };
  try {
    const sizes = relayerPoolSizes(config);
    const poolSize = relayerPoolSize(config);
    // All three under the worker's name: to an operator they are one worker's connections.
    const newPool = (size: number) =>
      createPool({
        connectionString: databaseUrl,
        applicationName: `symphony-relay ${config.workerId}`,
        max: size,
        keepOpen: true,
      });
    const pools: RelayerPools = {
      claims: newPool(sizes.claims),
      completions: newPool(sizes.completions),
      background: newPool(sizes.background),
    };
    const allPools = [pools.claims, pools.completions, pools.background];
    const endPools = () => Promise.all(allPools.map((pool) => pool.end()));
    logPoolTransitions(allPools, log, 'relayer');
    started.push(endPools);
    // The boot checks run on the claims pool's first connection, which stays open for claims.
    const identity = await assertActsAsRuntimeRole(pools.claims, databaseUrl, config.dbRole);
    if (identity.statementTimeout === '0') {
      log.warn(
        { event: 'no_statement_timeout', login: identity.login },
        `sessions of "${identity.login}" have no statement_timeout: a statement stuck behind a lock would hang a worker. ` +
          `Set it with 'symphony-relay roles create-login --name ${identity.login}' (ALTER ROLE ... SET statement_timeout = '${EXECUTOR_STATEMENT_TIMEOUT}')`,
      );
    }
    const policy = await assertActivePolicy(pools.claims).catch((error: unknown) => {
      if (error instanceof BootCheckError) throw error;
      throw new BootCheckError(
        `the policy check failed: ${describeConnectionFailure(error, databaseUrl)}`,
      );
    });
    log.info({ event: 'policy_checked', policyVersion: policy.version }, 'ACTIVE policy found');
    const limits = await assertWithinOperatorLimits(pools.claims, {
      leaseSeconds: config.leaseSeconds,
    }).catch((error: unknown) => {
      if (error instanceof BootCheckError) throw error;
      throw new BootCheckError(
        `the operator-limits check failed: ${describeConnectionFailure(error, databaseUrl)}`,
      );
    });
    // The database refuses a longer delay (22023); the operator's limit wins over ours.
    let retry = config.retry;
    const maxDelayMs = limits.maxRetryDelaySeconds * 1000;
    if (retry.maxMs > maxDelayMs) {
      log.info(
        { event: 'retry_max_capped', configuredMs: retry.maxMs, limitMs: maxDelayMs },
        'SYMPHONY_RETRY_MAX_MS is above outbox_limits.max_retry_delay_seconds; using the limit',
      );
      retry = { ...retry, maxMs: maxDelayMs };
    }
    // Every connection open and warm before the first claim: a claim that has to open one,
    // or compile the claim on a fresh backend, waited 40-60 ms (the p99 at 200 items/s).
    // Each pool's connections compile what they will run, and only that. Per-item completions
    // (batching off) run another function, not warmed.
    const workerId = config.workerId;
    await Promise.all([
      openConnections(pools.claims, sizes.claims, (client) =>
        warmUpClaims(client, { workerId, railTypes: rails.railTypes() }),
      ),
      openConnections(pools.completions, sizes.completions, (client) =>
        config.completionBatch ? warmUpCompletions(client, { workerId }) : Promise.resolve(),
      ),
      openConnections(pools.background, sizes.background, () => Promise.resolve()),
    ]).catch((error: unknown) => {
      throw new BootCheckError(
        `could not open the ${poolSize} database connections a worker keeps: ${describeConnectionFailure(error, databaseUrl)}`,
      );
    });
    const metrics = new RelayerMetrics({ poolStats: () => combinedPoolStats(allPools) });
    metrics.initialiseSeries(rails.railTypes());
    for (const railType of rails.railTypes()) {
      metrics.declareErrorCodes(railType, rails.get(railType)?.errorCodes);
    }
    const tracing = await Tracing.start(config.tracing, {
      workerId: config.workerId,
      version: metrics.version,
    });
    started.push(() => tracing.shutdown());
    if (tracing.enabled) {
      log.info(
        { event: 'tracing_enabled', tracesUrl: redactUrl(config.tracing.tracesUrl ?? '') },
        'exporting OpenTelemetry traces over OTLP/HTTP (http/json)',
      );
    }
    const relayer = new Relayer({
      pools,
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
      tracing,
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
    if (server) {
      started.push(() => server.close());
      log.info(
        { event: 'http_listening', host: server.host, port: server.port },
        'metrics and probes listening',
      );
    }
    await relayer.start();
    let stopping: Promise<ShutdownReport> | undefined;
    return {
      config,
      logger: log,
      metrics,
      relayer,
      server,
      railTypes: rails.railTypes(),
      stop() {
        // Idempotent: a second stop (signal plus shutdown hook, say) waits for the first.
        stopping ??= (async () => {
          const report = await relayer.stop();
          await tracing
            .shutdown()
            .catch((error: Error) =>
              log.warn(
                { event: 'tracing_flush_failed', err: { message: error.message } },
                'could not export the last spans',
              ),
            );
          await server?.close();
          await rails.close();
          await endPools();
          return report;
        })();
        return stopping;
      },
    };
  } catch (error) {
    await undo();
    throw error;
  }
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
