import { readFileSync } from 'node:fs';
import os from 'node:os';
import { ConfigError, showValue } from './config-error.ts';
import { LOG_LEVELS, type LogLevel } from './observability/logger.ts';
import type { TracingConfig } from './observability/tracing.ts';
import { DEFAULT_RAILS_JSON, parseRailsConfig, type RailsConfig } from './rails/registry.ts';
import type { RetryPolicy } from './relayer/backoff.ts';
import { readSecretVariable } from './secret-variable.ts';

export { ConfigError } from './config-error.ts';

/** Every setting of `symphony-relay run`, validated and typed. */
export interface RelayerConfig {
  /** Undefined when unset: `run` refuses to start (see `requireDatabaseUrl`), `local` embeds one. */
  databaseUrl: string | undefined;
  dbRole: string;
  workerId: string;
  concurrency: number;
  batchSize: number;
  leaseSeconds: number;
  dispatchTimeoutMs: number;
  leaseMarginMs: number;
  pollIntervalMs: number;
  pollOnly: boolean;
  repairIntervalMs: number;
  repairBatchSize: number;
  retry: RetryPolicy;
  completionBatch: boolean;
  shutdownGraceMs: number;
  /** port 0 disables the metrics/health server. */
  http: { host: string; port: number };
  queueStatsIntervalMs: number;
  rails: RailsConfig;
  /** Where the rails came from, for the startup log line. */
  railsSource: 'default' | 'SYMPHONY_RAILS' | 'SYMPHONY_RAILS_FILE';
  logLevel: LogLevel;
  /** OpenTelemetry trace export, from the standard OTEL_* variables; off unless an endpoint is set. */
  tracing: TracingConfig;
}

interface Parser<T> {
  /** What is allowed, as it reads after "expected". */
  allowed: string;
  parse(raw: string): T | undefined;
  /** Never echo the value in an error (it may hold a password). */
  secret?: boolean;
}

interface Setting<T> {
  parser: Parser<T>;
  /** The default as documented and parsed; null when there is none. */
  default: string | null;
  description: string;
  /** A default computed at load time (documented by `default`). */
  computeDefault?: () => string;
}

const setting = <T>(
  parser: Parser<T>,
  defaultValue: string | null,
  description: string,
  computeDefault?: () => string,
): Setting<T> => ({ parser, default: defaultValue, description, computeDefault });

const integer = (min: number, max: number): Parser<number> => ({
  allowed: `an integer from ${min} to ${max}`,
  parse: (raw) => {
    if (!/^\d+$/.test(raw)) return undefined;
    const value = Number(raw);
    return value >= min && value <= max ? value : undefined;
  },
});

const fraction: Parser<number> = {
  allowed: 'a number from 0 to 1',
  parse: (raw) => {
    if (!/^(\d+(\.\d*)?|\.\d+)$/.test(raw)) return undefined;
    const value = Number(raw);
    return value >= 0 && value <= 1 ? value : undefined;
  },
};

const boolean: Parser<boolean> = {
  allowed: 'one of true, false, 1, 0',
  parse: (raw) => ({ true: true, '1': true, false: false, '0': false })[raw.toLowerCase()],
};

const oneOf = <T extends string>(values: readonly T[]): Parser<T> => ({
  allowed: `one of ${values.join(', ')}`,
  parse: (raw) => values.find((value) => value === raw),
});

const matching = (pattern: RegExp, allowed: string): Parser<string> => ({
  allowed,
  parse: (raw) => (pattern.test(raw) ? raw : undefined),
});

const postgresUrl: Parser<string> = {
  allowed: 'a postgres:// or postgresql:// URL',
  secret: true,
  parse: (raw) => {
    try {
      const url = new URL(raw);
      return url.protocol === 'postgres:' || url.protocol === 'postgresql:' ? raw : undefined;
    } catch {
      return undefined;
    }
  },
};

const httpUrl: Parser<string> = {
  allowed: 'an http:// or https:// URL',
  parse: (raw) => {
    try {
      const url = new URL(raw);
      return url.protocol === 'http:' || url.protocol === 'https:' ? raw : undefined;
    } catch {
      return undefined;
    }
  },
};

/** `key=value,key2=value2` with URL-encoded values (the OpenTelemetry format). */
const otlpHeaders: Parser<Record<string, string>> = {
  allowed: 'a list of name=value pairs separated by commas',
  secret: true,
  parse: (raw) => {
    const headers: Record<string, string> = {};
    for (const pair of raw.split(',')) {
      const at = pair.indexOf('=');
      if (at <= 0) return undefined;
      const name = pair.slice(0, at).trim();
      if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)) return undefined;
      try {
        headers[name] = decodeURIComponent(pair.slice(at + 1).trim());
      } catch {
        return undefined;
      }
    }
    return headers;
  },
};

const OTLP_PROTOCOL_HELP =
  'http/json (the relayer exports OTLP as JSON over HTTP, which an OpenTelemetry Collector accepts on port 4318)';

// The rails settings are validated as a whole in loadRails (JSON, exclusivity, each rail).
const railsJson: Parser<string> = { allowed: 'a JSON object', parse: (raw) => raw };
const filePath: Parser<string> = { allowed: 'the path of a readable file', parse: (raw) => raw };

const SETTINGS = {
  DATABASE_URL: setting(
    postgresUrl,
    null,
    'PostgreSQL 18 URL of a LOGIN role that is a member of SYMPHONY_DB_ROLE. Required by `run` (this or DATABASE_URL_FILE); `local` starts an embedded database instead.',
  ),
  DATABASE_URL_FILE: setting(
    filePath,
    null,
    'Path of a file holding DATABASE_URL (a Docker or Kubernetes secret; one trailing line break is ignored). Not together with DATABASE_URL. The CLI commands read it too.',
  ),
  SYMPHONY_DB_ROLE: setting(
    matching(/^[a-z_][a-z0-9_]{0,62}$/, 'a lowercase PostgreSQL role name'),
    'symphony_executor',
    'NOLOGIN role every session of the login must act as from its start (the role-level default of the login, set by roles create-login); start is refused otherwise.',
  ),
  SYMPHONY_WORKER_ID: setting(
    matching(
      /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/,
      '1-128 letters, digits, ".", "_", ":", "@" or "-"',
    ),
    '<hostname>-<pid>',
    'Identity recorded on leases and attempts; must be unique among running workers.',
    () => `${os.hostname()}-${process.pid}`,
  ),
  SYMPHONY_CONCURRENCY: setting(
    integer(1, 1024),
    '512',
    'Dispatch slots: items delivered to rails at once (lower it to what your rails accept, or set a per-rail rate limit).',
  ),
  SYMPHONY_BATCH_SIZE: setting(
    integer(1, 1000),
    '256',
    'Most items claimed at once; a claim never takes more than the free dispatch slots. While a backlog lasts, a worker claims again once this many slots are free (or half its slots, if that is fewer), so it claims in full batches.',
  ),
  SYMPHONY_LEASE_SECONDS: setting(
    integer(1, 3600),
    '60',
    'How long a claimed item stays leased to this worker; must cover the dispatch timeout plus the margin.',
  ),
  SYMPHONY_DISPATCH_TIMEOUT_MS: setting(
    integer(100, 600_000),
    '15000',
    'Hard limit for one delivery to a rail; a dispatch that takes longer is RETRYABLE with TIMEOUT.',
  ),
  SYMPHONY_LEASE_MARGIN_MS: setting(
    integer(0, 600_000),
    '5000',
    'Time reserved after the dispatch timeout for recording the outcome before the lease expires.',
  ),
  SYMPHONY_POLL_INTERVAL_MS: setting(
    integer(10, 3_600_000),
    '5000',
    'Fallback claim timer for when no NOTIFY arrives.',
  ),
  SYMPHONY_POLL_ONLY: setting(
    boolean,
    'false',
    'Do not LISTEN; rely on polling only (needed behind a transaction-pooling PgBouncer).',
  ),
  SYMPHONY_REPAIR_INTERVAL_MS: setting(
    integer(100, 3_600_000),
    '15000',
    'How often expired leases (items of crashed workers) are requeued.',
  ),
  SYMPHONY_REPAIR_BATCH_SIZE: setting(
    integer(1, 1000),
    '100',
    'Expired leases requeued per repair transaction (a run takes up to 10 such chunks).',
  ),
  SYMPHONY_RETRY_BASE_MS: setting(
    integer(1, 3_600_000),
    '1000',
    'Retry delay after the first RETRYABLE outcome; doubles per attempt.',
  ),
  SYMPHONY_RETRY_MAX_MS: setting(
    integer(1, 86_400_000),
    '300000',
    "Cap on any retry delay, the rail's Retry-After included.",
  ),
  SYMPHONY_RETRY_JITTER: setting(
    fraction,
    '0.2',
    'Fraction of a retry delay taken off at random (0..1).',
  ),
  SYMPHONY_COMPLETION_BATCH: setting(
    boolean,
    'true',
    'Group commit of outcomes: outcomes that finish in the same event-loop turn, or while a batch is being recorded, go together in one transaction (up to 2 batches in flight; a lone outcome waits one event-loop turn); false records each outcome in its own transaction.',
  ),
  SYMPHONY_SHUTDOWN_GRACE_MS: setting(
    integer(0, 600_000),
    '20000',
    'On SIGTERM/SIGINT: time to finish in-flight dispatches; after it they are aborted and recorded RETRYABLE.',
  ),
  SYMPHONY_HTTP_HOST: setting(
    matching(/^[A-Za-z0-9.:[\]-]{1,253}$/, 'a host name or IP address'),
    '127.0.0.1',
    'Address of the /metrics, /healthz and /readyz server. They have no authentication: the default keeps them on loopback; in a container set 0.0.0.0 (the image does) and let a network policy decide who may connect.',
  ),
  SYMPHONY_HTTP_PORT: setting(integer(0, 65_535), '9464', 'Port of that server; 0 disables it.'),
  SYMPHONY_QUEUE_STATS_INTERVAL_MS: setting(
    integer(100, 3_600_000),
    '5000',
    'How often queue depth and age are sampled for metrics.',
  ),
  SYMPHONY_RAILS: setting(
    railsJson,
    DEFAULT_RAILS_JSON,
    'JSON object: rail_type → { "type": "sandbox" | "http", ...options } or { "type": "module", "module": "<file or package>", "options": {...} } (your own adapter). Not together with SYMPHONY_RAILS_FILE.',
  ),
  SYMPHONY_RAILS_FILE: setting(
    filePath,
    null,
    'Path of a file holding the same JSON as SYMPHONY_RAILS (keeps rail credentials out of the environment).',
  ),
  LOG_LEVEL: setting(oneOf(LOG_LEVELS), 'info', `Log level: ${LOG_LEVELS.join(', ')}.`),
  OTEL_EXPORTER_OTLP_ENDPOINT: setting(
    httpUrl,
    null,
    'OpenTelemetry: base URL of an OTLP/HTTP receiver; traces go to <url>/v1/traces. Tracing is off unless this or the next variable is set.',
  ),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: setting(
    httpUrl,
    null,
    'OpenTelemetry: full URL traces are sent to (wins over OTEL_EXPORTER_OTLP_ENDPOINT).',
  ),
  OTEL_EXPORTER_OTLP_PROTOCOL: setting(
    oneOf(['http/json'] as const),
    'http/json',
    `OpenTelemetry: export protocol; only ${OTLP_PROTOCOL_HELP}.`,
  ),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: setting(
    oneOf(['http/json'] as const),
    'http/json',
    'OpenTelemetry: the same, for traces only.',
  ),
  OTEL_EXPORTER_OTLP_HEADERS: setting(
    otlpHeaders,
    null,
    'OpenTelemetry: headers sent with every export (e.g. an API key), as name=value pairs separated by commas; never logged.',
  ),
  OTEL_SERVICE_NAME: setting(
    matching(/^[\x21-\x7e]{1,128}$/, '1-128 printable ASCII characters'),
    'symphony-relay',
    'OpenTelemetry: service.name of the exported spans.',
  ),
  OTEL_TRACES_EXPORTER: setting(
    oneOf(['otlp', 'none'] as const),
    'otlp',
    'OpenTelemetry: none turns trace export off even when an endpoint is set.',
  ),
  OTEL_SDK_DISABLED: setting(
    boolean,
    'false',
    'OpenTelemetry: true turns tracing off entirely (no spans, no traceparent to rails).',
  ),
} as const;

type SettingName = keyof typeof SETTINGS;
type ValueOf<N extends SettingName> = (typeof SETTINGS)[N] extends Setting<infer T> ? T : never;

export interface ConfigVariable {
  name: string;
  /** As documented; null when there is no default. */
  default: string | null;
  description: string;
  allowed: string;
}

/** One source for `--help`, the README and validation. */
export const CONFIG_VARIABLES: readonly ConfigVariable[] = Object.entries(SETTINGS).map(
  ([name, spec]: [string, Setting<unknown>]) => ({
    name,
    default: spec.default,
    description: spec.description,
    allowed: spec.parser.allowed,
  }),
);

/**
 * Reads and validates every setting. Throws ConfigError (one line naming the variable, the
 * bad value unless secret, and what is allowed) on the first problem. An empty variable
 * counts as unset, as `FOO=` in a compose file means "no value".
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): RelayerConfig {
  rejectUnknownVariables(env);
  const read = <N extends SettingName>(name: N): ValueOf<N> => readSetting(env, name);

  const dispatchTimeoutMs = read('SYMPHONY_DISPATCH_TIMEOUT_MS');
  const config: RelayerConfig = {
    databaseUrl: loadDatabaseUrl(env),
    dbRole: read('SYMPHONY_DB_ROLE'),
    workerId: read('SYMPHONY_WORKER_ID'),
    concurrency: read('SYMPHONY_CONCURRENCY'),
    batchSize: read('SYMPHONY_BATCH_SIZE'),
    leaseSeconds: read('SYMPHONY_LEASE_SECONDS'),
    dispatchTimeoutMs,
    leaseMarginMs: read('SYMPHONY_LEASE_MARGIN_MS'),
    pollIntervalMs: read('SYMPHONY_POLL_INTERVAL_MS'),
    pollOnly: read('SYMPHONY_POLL_ONLY'),
    repairIntervalMs: read('SYMPHONY_REPAIR_INTERVAL_MS'),
    repairBatchSize: read('SYMPHONY_REPAIR_BATCH_SIZE'),
    retry: {
      baseMs: read('SYMPHONY_RETRY_BASE_MS'),
      maxMs: read('SYMPHONY_RETRY_MAX_MS'),
      jitter: read('SYMPHONY_RETRY_JITTER'),
    },
    completionBatch: read('SYMPHONY_COMPLETION_BATCH'),
    shutdownGraceMs: read('SYMPHONY_SHUTDOWN_GRACE_MS'),
    http: { host: read('SYMPHONY_HTTP_HOST'), port: read('SYMPHONY_HTTP_PORT') },
    queueStatsIntervalMs: read('SYMPHONY_QUEUE_STATS_INTERVAL_MS'),
    ...loadRails(env),
    logLevel: read('LOG_LEVEL'),
    tracing: loadTracing(env, read),
  };
  checkLeaseOutlastsDispatch(config);
  checkRetryBounds(config);
  checkRailTimeouts(config);
  return config;
}

/** For `run`: the database is not optional there. */
export function requireDatabaseUrl(config: RelayerConfig): string {
  if (config.databaseUrl === undefined) {
    throw new ConfigError(
      'DATABASE_URL',
      'DATABASE_URL is not set: `symphony-relay run` needs the postgres:// URL of the PostgreSQL 18 database in DATABASE_URL or in the file DATABASE_URL_FILE names (use `symphony-relay local` to run against an embedded database instead)',
    );
  }
  return config.databaseUrl;
}

/** DATABASE_URL inline or from DATABASE_URL_FILE; validated, never echoed. */
function loadDatabaseUrl(env: NodeJS.ProcessEnv): string | undefined {
  const secret = readSecretVariable(env, 'DATABASE_URL');
  if (secret === undefined) return undefined;
  const { parser } = SETTINGS.DATABASE_URL;
  const url = parser.parse(secret.value);
  if (url === undefined) {
    throw new ConfigError(
      secret.source,
      `${secret.source === 'DATABASE_URL' ? 'DATABASE_URL' : `the DATABASE_URL in ${secret.source}`} (value not shown: it may contain a password) is invalid: expected ${parser.allowed}`,
    );
  }
  return url;
}

function readSetting<N extends SettingName>(env: NodeJS.ProcessEnv, name: N): ValueOf<N> {
  const spec: Setting<unknown> = SETTINGS[name];
  const raw = nonEmpty(env[name]) ?? spec.computeDefault?.() ?? spec.default;
  if (raw === null) {
    throw new ConfigError(name, `${name} is not set: expected ${spec.parser.allowed}`);
  }
  const value = spec.parser.parse(raw);
  if (value === undefined) {
    const shown = spec.parser.secret
      ? ' (value not shown: it may contain a password)'
      : `=${showValue(raw)}`;
    throw new ConfigError(name, `${name}${shown} is invalid: expected ${spec.parser.allowed}`);
  }
  return value as ValueOf<N>;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

function loadRails(env: NodeJS.ProcessEnv): Pick<RelayerConfig, 'rails' | 'railsSource'> {
  const inline = nonEmpty(env.SYMPHONY_RAILS);
  const file = nonEmpty(env.SYMPHONY_RAILS_FILE);
  if (inline !== undefined && file !== undefined) {
    throw new ConfigError(
      'SYMPHONY_RAILS_FILE',
      'SYMPHONY_RAILS and SYMPHONY_RAILS_FILE are both set: expected at most one of them (unset one)',
    );
  }
  if (file !== undefined) {
    return {
      rails: parseRailsConfig(
        parseRailsJson(readRailsFile(file), 'SYMPHONY_RAILS_FILE'),
        'SYMPHONY_RAILS_FILE',
      ),
      railsSource: 'SYMPHONY_RAILS_FILE',
    };
  }
  const source = inline === undefined ? 'default' : 'SYMPHONY_RAILS';
  return {
    rails: parseRailsConfig(
      parseRailsJson(inline ?? DEFAULT_RAILS_JSON, 'SYMPHONY_RAILS'),
      'SYMPHONY_RAILS',
    ),
    railsSource: source,
  };
}

/** OpenTelemetry's own rules: the signal-specific endpoint as is, else <base>/v1/traces. */
function loadTracing(
  env: NodeJS.ProcessEnv,
  read: <N extends SettingName>(name: N) => ValueOf<N>,
): TracingConfig {
  const optional = <N extends SettingName>(name: N): ValueOf<N> | undefined =>
    nonEmpty(env[name]) === undefined ? undefined : read(name);
  const tracesEndpoint = optional('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const baseEndpoint = optional('OTEL_EXPORTER_OTLP_ENDPOINT');
  read('OTEL_EXPORTER_OTLP_PROTOCOL');
  read('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL');
  const headers = optional('OTEL_EXPORTER_OTLP_HEADERS') ?? {};
  const serviceName = read('OTEL_SERVICE_NAME');
  const off = read('OTEL_SDK_DISABLED') || read('OTEL_TRACES_EXPORTER') === 'none';
  const tracesUrl =
    tracesEndpoint ??
    (baseEndpoint === undefined ? undefined : `${baseEndpoint.replace(/\/+$/, '')}/v1/traces`);
  return { tracesUrl: off ? undefined : tracesUrl, headers, serviceName };
}

function readRailsFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'read error';
    throw new ConfigError(
      'SYMPHONY_RAILS_FILE',
      `SYMPHONY_RAILS_FILE=${showValue(path)} is invalid: expected a readable file with the rails JSON (${code})`,
    );
  }
}

/** The JSON is never echoed (it may hold auth headers), and neither is JSON.parse's message, which quotes it. */
function parseRailsJson(json: string, variable: string): unknown {
  try {
    return JSON.parse(json);
  } catch (error) {
    const position = /position (\d+)/.exec(String((error as Error).message))?.[1];
    throw new ConfigError(
      variable,
      `${variable} is invalid: expected JSON (a syntax error${position ? ` at character ${position}` : ''}; value not shown: it may contain credentials)`,
    );
  }
}

/**
 * A lease that can expire while its dispatch is still running lets repair hand the item to
 * another worker: two deliveries in flight, and a completion fenced off as LEASE_LOST.
 */
function checkLeaseOutlastsDispatch(config: RelayerConfig): void {
  const leaseMs = config.leaseSeconds * 1000;
  const neededMs = config.dispatchTimeoutMs + config.leaseMarginMs;
  if (leaseMs < neededMs) {
    throw new ConfigError(
      'SYMPHONY_LEASE_SECONDS',
      `SYMPHONY_LEASE_SECONDS=${config.leaseSeconds} (${leaseMs} ms) is shorter than SYMPHONY_DISPATCH_TIMEOUT_MS=${config.dispatchTimeoutMs} plus SYMPHONY_LEASE_MARGIN_MS=${config.leaseMarginMs} (${neededMs} ms): raise SYMPHONY_LEASE_SECONDS to at least ${Math.ceil(neededMs / 1000)} or lower SYMPHONY_DISPATCH_TIMEOUT_MS`,
    );
  }
}

function checkRetryBounds(config: RelayerConfig): void {
  if (config.retry.maxMs < config.retry.baseMs) {
    throw new ConfigError(
      'SYMPHONY_RETRY_MAX_MS',
      `SYMPHONY_RETRY_MAX_MS=${config.retry.maxMs} is below SYMPHONY_RETRY_BASE_MS=${config.retry.baseMs}: expected a cap at least as large as the base delay`,
    );
  }
}

/** A rail's own timeout may only be shorter: the dispatch timeout is what the lease is sized for. */
function checkRailTimeouts(config: RelayerConfig): void {
  for (const [railType, rail] of Object.entries(config.rails)) {
    if (
      rail.type === 'http' &&
      rail.timeoutMs !== undefined &&
      rail.timeoutMs > config.dispatchTimeoutMs
    ) {
      throw new ConfigError(
        config.railsSource,
        `${config.railsSource} rail ${JSON.stringify(railType)}: "timeoutMs" ${rail.timeoutMs} exceeds SYMPHONY_DISPATCH_TIMEOUT_MS=${config.dispatchTimeoutMs}: lower it or raise the dispatch timeout (and the lease with it)`,
      );
    }
  }
}

const SERVICE_LINK_ADDRESS = /^[0-9a-fA-F.:]+$/;
const SERVICE_LINK_PORT = /^\d{1,5}$/;
const SERVICE_LINK_URL = /^(tcp|udp|sctp):\/\/\S+:\d{1,5}$/;

/**
 * Kubernetes injects service-link variables for every Service in the namespace (unless the
 * pod sets enableServiceLinks: false): a Service `symphony-relay` gives
 * SYMPHONY_RELAY_SERVICE_HOST=10.0.0.7, SYMPHONY_RELAY_SERVICE_PORT=9464,
 * SYMPHONY_RELAY_PORT=tcp://10.0.0.7:9464, SYMPHONY_RELAY_PORT_9464_TCP(_PROTO|_PORT|_ADDR)=….
 * They are ignored, but only with Kubernetes' own value shapes, so a typo such as
 * SYMPHONY_HTT_PORT=9465 is still refused.
 */
export function isServiceLinkVariable(name: string, value: string | undefined): boolean {
  if (value === undefined) return false;
  const link =
    /^SYMPHONY(?:_[A-Z0-9_]+?)?_(SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT(?:_\d{1,5}_(?:TCP|UDP|SCTP)(?:_(PROTO|PORT|ADDR))?)?)$/.exec(
      name,
    );
  if (!link) return false;
  const [, kind, part] = link;
  if (kind === 'SERVICE_HOST') return SERVICE_LINK_ADDRESS.test(value);
  if (kind?.startsWith('SERVICE_PORT')) return SERVICE_LINK_PORT.test(value);
  if (part === 'PROTO') return /^(tcp|udp|sctp)$/.test(value);
  if (part === 'PORT') return SERVICE_LINK_PORT.test(value);
  if (part === 'ADDR') return SERVICE_LINK_ADDRESS.test(value);
  return SERVICE_LINK_URL.test(value);
}

/** Typo protection: `SYMPHONY_CONCURENCY=64` must not silently run with 16. */
function rejectUnknownVariables(env: NodeJS.ProcessEnv): void {
  const known = Object.keys(SETTINGS);
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith('SYMPHONY_') || known.includes(name)) continue;
    if (isServiceLinkVariable(name, env[name])) continue;
    const nearest = nearestName(name, known);
    throw new ConfigError(
      name,
      `${name} is not a known setting: did you mean ${nearest}? Fix or unset it (symphony-relay run --help lists every setting)`,
    );
  }
}

function nearestName(name: string, candidates: string[]): string {
  let best = candidates[0] ?? '';
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** Plain-text listing for `symphony-relay run --help`. */
export function formatConfigHelp(): string {
  return CONFIG_VARIABLES.map(
    (v) => `  ${v.name}  [${v.default ?? 'none'}]\n      ${v.description} Allowed: ${v.allowed}.`,
  ).join('\n');
}

/** Markdown table for the README. */
export function formatConfigMarkdown(): string {
  const escape = (text: string) => text.replace(/\|/g, '\\|');
  const rows = CONFIG_VARIABLES.map(
    (v) =>
      `| \`${v.name}\` | ${v.default === null ? '—' : `\`${escape(v.default)}\``} | ${escape(v.description)} Allowed: ${escape(v.allowed)}. |`,
  );
  return ['| Variable | Default | Meaning |', '| --- | --- | --- |', ...rows].join('\n');
}
