import type { Command } from 'commander';
import { createLogger } from '../observability/logger.ts';
import { startMockRail, type MockRailOptions } from '../rails/mock-rail-server.ts';
import { CliError } from './errors.ts';
import { stopOnSignals } from './runtime.ts';

interface MockRailFlags {
  port: string;
  host: string;
  latencyMs: string;
  failureRate: string;
  retryableRate: string;
  retryAfterSeconds: string;
}

function invalid(flag: string, value: string, expected: string): CliError {
  return new CliError(`mock-rail: ${flag} "${value}" is invalid: expected ${expected}`, 2);
}

function integerIn(flag: string, value: string, min: number, max: number): number {
  const number = Number(value);
  if (value.trim() === '' || !Number.isInteger(number) || number < min || number > max) {
    throw invalid(flag, value, `an integer from ${min} to ${max}`);
  }
  return number;
}

function share(flag: string, value: string): number {
  const number = Number(value);
  if (value.trim() === '' || !Number.isFinite(number) || number < 0 || number > 1) {
    throw invalid(flag, value, 'a number from 0 to 1 (e.g. 0.05 for 5%)');
  }
  return number;
}

/** "40" (fixed) or "10-200" (uniform between the two). */
function latency(value: string): number | [number, number] {
  const expected = 'milliseconds, fixed ("40") or a range ("10-200")';
  const parts = value.split('-');
  const numbers = parts.map((part) => Number(part));
  if (
    parts.length > 2 ||
    parts.some((part) => part.trim() === '') ||
    numbers.some((number) => !Number.isInteger(number) || number < 0)
  ) {
    throw invalid('--latency-ms', value, expected);
  }
  const [min = 0, max = min] = numbers;
  if (max < min) throw invalid('--latency-ms', value, `${expected} with min <= max`);
  return parts.length === 1 ? min : [min, max];
}

export function parseMockRailFlags(flags: MockRailFlags): MockRailOptions {
  const options: MockRailOptions = {
    port: integerIn('--port', flags.port, 0, 65_535),
    host: flags.host,
    latencyMs: latency(flags.latencyMs),
    failureRate: share('--failure-rate', flags.failureRate),
    retryableRate: share('--retryable-rate', flags.retryableRate),
    retryAfterSeconds: integerIn('--retry-after-seconds', flags.retryAfterSeconds, 0, 86_400),
  };
  if ((options.failureRate ?? 0) + (options.retryableRate ?? 0) > 1) {
    throw new CliError('mock-rail: --failure-rate plus --retryable-rate must not exceed 1', 2);
  }
  return options;
}

export function registerMockRailCommand(program: Command): void {
  program
    .command('mock-rail')
    .summary('serve a stand-in HTTP payment rail until SIGTERM/SIGINT')
    .description(
      'serve a stand-in payment rail over HTTP (POST /dispatch, GET /healthz, GET /stats) for the ' +
        'compose stack and demos: accepts each idempotency key once and answers redeliveries with ' +
        'the same reference; runs until SIGTERM or SIGINT, then prints its counters and exits 0',
    )
    .option('--port <port>', 'TCP port to listen on (0 = any free port)', '8080')
    .option(
      '--host <address>',
      'address to bind (0.0.0.0 to serve other hosts or containers, as the compose stack does)',
      '127.0.0.1',
    )
    .option('--latency-ms <ms>', 'response delay: fixed ("40") or a uniform range ("10-200")', '0')
    .option(
      '--failure-rate <share>',
      'share of new deliveries refused with 422 (FAILED at the relayer), 0 to 1',
      '0',
    )
    .option(
      '--retryable-rate <share>',
      'share of new deliveries answered 503 with Retry-After (RETRYABLE at the relayer), 0 to 1',
      '0',
    )
    .option('--retry-after-seconds <s>', 'Retry-After sent with each 503', '1')
    .action(async (flags: MockRailFlags) => {
      const options = parseMockRailFlags(flags);
      const logger = createLogger({ level: 'info', name: 'symphony-mock-rail' });
      const rail = await startMockRail(options);
      logger.info(
        {
          event: 'mock_rail_listening',
          url: rail.url,
          port: rail.port,
          latencyMs: options.latencyMs,
          failureRate: options.failureRate,
          retryableRate: options.retryableRate,
        },
        `mock rail listening on ${rail.url}`,
      );
      stopOnSignals(async () => {
        const stats = rail.stats();
        await rail.close();
        logger.info({ event: 'mock_rail_stopped', stats }, 'mock rail stopped');
      }, logger);
    });
}
