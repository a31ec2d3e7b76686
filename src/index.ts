/**
 * The public API of the `symphony-relay` package: start a relayer from your own code, with
 * rail adapters written in your own code. `symphony-relay run` is a thin shell over the same
 * start-up; everything else under src/ is internal and may change without notice.
 */
import { startRuntime } from './cli/runtime.ts';
import type { Logger } from './observability/logger.ts';
import type { RailAdapter } from './rails/rail.ts';
import type { Readiness } from './observability/server.ts';
import type { ShutdownReport } from './relayer/relayer.ts';

export type {
  DispatchOutcome,
  DispatchRequest,
  RailAdapter,
  RailAdapterContext,
  RailAdapterFactory,
} from './rails/rail.ts';
export type { Readiness } from './observability/server.ts';
export type { ShutdownReport } from './relayer/relayer.ts';
export type { Logger } from './observability/logger.ts';
export { ConfigError } from './config-error.ts';

export interface StartRelayerOptions {
  /**
   * The settings, as the environment variables `symphony-relay run` reads (DATABASE_URL,
   * SYMPHONY_*, LOG_LEVEL, OTEL_*), validated the same way. Defaults to `process.env`.
   */
  env?: NodeJS.ProcessEnv;
  /**
   * Rail adapters built in your code, keyed by the rail_type of the items they deliver. They
   * sit next to the rails of SYMPHONY_RAILS (a rail_type may appear in only one of them);
   * the relayer calls their close() when it stops.
   */
  rails?: Record<string, RailAdapter>;
  /** A pino logger to write to; by default JSON lines on stdout at LOG_LEVEL. */
  logger?: Logger;
}

export interface RunningRelayer {
  readonly workerId: string;
  /** The rail types this worker claims. */
  readonly railTypes: readonly string[];
  /** Database reachable, listener up (or poll-only), not stopping. */
  readiness(): Readiness;
  /** The Prometheus exposition text (also served on SYMPHONY_HTTP_PORT unless it is 0). */
  metrics(): Promise<string>;
  /**
   * Graceful stop: stop claiming, release unstarted leases, let in-flight dispatches finish
   * within SYMPHONY_SHUTDOWN_GRACE_MS, close rails and connections.
   */
  stop(): Promise<ShutdownReport>;
}

/**
 * Starts a relayer in this process and resolves once it is claiming. Fails (with a
 * `ConfigError` for a bad setting) without leaving anything running.
 */
export async function startRelayer(options: StartRelayerOptions = {}): Promise<RunningRelayer> {
  const runtime = await startRuntime(options.env ?? process.env, options.logger, {
    adapters: options.rails,
  });
  let stopping: Promise<ShutdownReport> | undefined;
  return {
    workerId: runtime.config.workerId,
    railTypes: Object.freeze([...runtime.railTypes]),
    readiness: () => runtime.relayer.readiness(),
    metrics: () => runtime.metrics.text(),
    stop: () => (stopping ??= runtime.stop()),
  };
}
