import pino, { type DestinationStream, type Level, type Logger } from 'pino';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = Level | 'silent';

export interface LoggerOptions {
  level: LogLevel;
  name: string;
  /** Where JSON lines go; stdout unless a test captures them. */
  destination?: DestinationStream;
}

export const REDACTED = '[redacted]';

/**
 * Keys whose values never reach a log line, at any depth and in any spelling
 * (`databaseUrl`, `DATABASE_URL`, `Authorization`): payment payloads, credentials,
 * connection strings, rail headers (they carry auth).
 */
const SECRET_KEYS = new Set([
  'payload',
  'password',
  'connectionstring',
  'databaseurl',
  'headers',
  'authorization',
  'secret',
]);
const MAX_DEPTH = 8;

/**
 * pino's own path redaction, for child bindings (`logger.child({ databaseUrl })`), which do
 * not pass through `formatters.log`. Paths only reach a fixed depth, so logged objects are
 * walked by `redact` below instead.
 */
const BINDING_PATHS = [
  'payload',
  'password',
  'connectionString',
  'databaseUrl',
  'DATABASE_URL',
  'headers',
  'authorization',
  'Authorization',
  'secret',
];

/** JSON logger; money-moving payloads and credentials never reach its output. */
export function createLogger(options: LoggerOptions): Logger {
  const config: pino.LoggerOptions = {
    name: options.name,
    level: options.level,
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: BINDING_PATHS, censor: REDACTED },
    formatters: {
      level: (label) => ({ level: label }),
      log: (object) => redact(object) as Record<string, unknown>,
    },
  };
  return options.destination ? pino(config, options.destination) : pino(config);
}

/** A copy of `value` with secret-named keys censored; untouched branches are shared, not cloned. */
export function redact(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_DEPTH) return '[too deep to log]';
  if (Array.isArray(value)) {
    const items = value.map((item) => redact(item, depth + 1));
    return items.some((item, index) => item !== value[index]) ? items : value;
  }
  // Errors, dates, buffers: pino's serializers render them; they carry no secret-named keys.
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) return value;

  let copy: Record<string, unknown> | undefined;
  for (const [key, child] of Object.entries(value)) {
    const replacement = isSecretKey(key) ? REDACTED : redact(child, depth + 1);
    if (replacement !== child) {
      copy ??= { ...(value as Record<string, unknown>) };
      copy[key] = replacement;
    }
  }
  return copy ?? value;
}

function isSecretKey(key: string): boolean {
  return SECRET_KEYS.has(key.toLowerCase().replace(/[_-]/g, ''));
}

const SECRET_QUERY_PARAM = /pass|secret|token|key/i;

/**
 * A URL safe to put in a message or log: password and secret-looking query parameters
 * (libpq accepts `?password=`) replaced. Something that does not parse is not shown at all,
 * because it may be a keyword/value connection string with a password in it.
 */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return '[unparseable URL]';
  }
  if (parsed.password !== '') parsed.password = '***';
  for (const name of [...parsed.searchParams.keys()]) {
    if (SECRET_QUERY_PARAM.test(name)) parsed.searchParams.set(name, '***');
  }
  return parsed.toString();
}
