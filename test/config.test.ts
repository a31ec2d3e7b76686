import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CONFIG_VARIABLES,
  ConfigError,
  formatConfigHelp,
  formatConfigMarkdown,
  loadConfig,
  requireDatabaseUrl,
} from '../src/config.ts';

/** The ConfigError loadConfig throws for `env`; fails the test when it does not throw one. */
function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    const configError = error as ConfigError;
    expect(configError.message).not.toMatch(/[\r\n]/);
    return configError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

function railsFile(content: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'symphony-rails-'));
  const file = path.join(dir, 'rails.json');
  writeFileSync(file, content);
  return file;
}

describe('loadConfig defaults', () => {
  it('runs with no variables set, with the documented defaults', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      databaseUrl: undefined,
      dbRole: 'symphony_executor',
      workerId: `${os.hostname()}-${process.pid}`,
      concurrency: 512,
      batchSize: 256,
      leaseSeconds: 60,
      dispatchTimeoutMs: 15000,
      leaseMarginMs: 5000,
      pollIntervalMs: 5000,
      pollOnly: false,
      repairIntervalMs: 15000,
      repairBatchSize: 100,
      retry: { baseMs: 1000, maxMs: 300000, jitter: 0.2 },
      shutdownGraceMs: 20000,
      http: { host: '127.0.0.1', port: 9464 },
      queueStatsIntervalMs: 5000,
      railsSource: 'default',
      logLevel: 'info',
    });
    expect(config.rails).toEqual({
      sandbox: expect.objectContaining({ type: 'sandbox', latencyMs: [5, 50] }),
    });
  });

  it('treats an empty variable as unset (FOO= in a compose file)', () => {
    expect(loadConfig({ SYMPHONY_CONCURRENCY: '', DATABASE_URL: '' })).toMatchObject({
      concurrency: 512,
      databaseUrl: undefined,
    });
  });

  it('reads every variable that is set', () => {
    const config = loadConfig({
      DATABASE_URL: 'postgres://relay:pw@db:5432/symphony',
      SYMPHONY_DB_ROLE: 'custom_executor',
      SYMPHONY_WORKER_ID: 'relay-a.1',
      SYMPHONY_CONCURRENCY: '64',
      SYMPHONY_BATCH_SIZE: '100',
      SYMPHONY_LEASE_SECONDS: '30',
      SYMPHONY_DISPATCH_TIMEOUT_MS: '20000',
      SYMPHONY_LEASE_MARGIN_MS: '10000',
      SYMPHONY_POLL_INTERVAL_MS: '250',
      SYMPHONY_POLL_ONLY: 'TRUE',
      SYMPHONY_REPAIR_INTERVAL_MS: '1000',
      SYMPHONY_REPAIR_BATCH_SIZE: '5',
      SYMPHONY_RETRY_BASE_MS: '10',
      SYMPHONY_RETRY_MAX_MS: '10',
      SYMPHONY_RETRY_JITTER: '0',
      SYMPHONY_SHUTDOWN_GRACE_MS: '0',
      SYMPHONY_HTTP_HOST: '127.0.0.1',
      SYMPHONY_HTTP_PORT: '0',
      SYMPHONY_QUEUE_STATS_INTERVAL_MS: '1000',
      LOG_LEVEL: 'debug',
    });
    expect(config).toMatchObject({
      databaseUrl: 'postgres://relay:pw@db:5432/symphony',
      dbRole: 'custom_executor',
      workerId: 'relay-a.1',
      concurrency: 64,
      batchSize: 100,
      leaseSeconds: 30,
      dispatchTimeoutMs: 20000,
      leaseMarginMs: 10000,
      pollIntervalMs: 250,
      pollOnly: true,
      repairIntervalMs: 1000,
      repairBatchSize: 5,
      retry: { baseMs: 10, maxMs: 10, jitter: 0 },
      shutdownGraceMs: 0,
      http: { host: '127.0.0.1', port: 0 },
      queueStatsIntervalMs: 1000,
      logLevel: 'debug',
    });
    expect(requireDatabaseUrl(config)).toBe('postgres://relay:pw@db:5432/symphony');
  });
});

describe('loadConfig refuses bad values with one line naming variable, value and what is allowed', () => {
  it('names the variable, the value and the range of an integer', () => {
    const error = configError({ SYMPHONY_CONCURRENCY: 'abc' });
    expect(error.variable).toBe('SYMPHONY_CONCURRENCY');
    expect(error.message).toBe(
      'SYMPHONY_CONCURRENCY="abc" is invalid: expected an integer from 1 to 1024',
    );
  });

  it.each([
    ['SYMPHONY_CONCURRENCY', '0'],
    ['SYMPHONY_CONCURRENCY', '1025'],
    ['SYMPHONY_BATCH_SIZE', '1.5'],
    ['SYMPHONY_BATCH_SIZE', '-1'],
    ['SYMPHONY_LEASE_SECONDS', ' 60'],
    ['SYMPHONY_HTTP_PORT', '65536'],
    ['SYMPHONY_POLL_INTERVAL_MS', '1e3'],
  ])('rejects %s=%j', (variable, value) => {
    const error = configError({ [variable]: value });
    expect(error.variable).toBe(variable);
    expect(error.message).toContain(`${variable}=${JSON.stringify(value)} is invalid`);
    expect(error.message).toMatch(/expected an integer from \d+ to \d+/);
  });

  it('accepts booleans true/false/1/0 only', () => {
    expect(loadConfig({ SYMPHONY_POLL_ONLY: '1' }).pollOnly).toBe(true);
    expect(loadConfig({ SYMPHONY_POLL_ONLY: '0' }).pollOnly).toBe(false);
    expect(loadConfig({ SYMPHONY_POLL_ONLY: 'false' }).pollOnly).toBe(false);
    expect(configError({ SYMPHONY_POLL_ONLY: 'yes' }).message).toBe(
      'SYMPHONY_POLL_ONLY="yes" is invalid: expected one of true, false, 1, 0',
    );
  });

  it('bounds the jitter to 0..1', () => {
    expect(loadConfig({ SYMPHONY_RETRY_JITTER: '0.5' }).retry.jitter).toBe(0.5);
    expect(loadConfig({ SYMPHONY_RETRY_JITTER: '1' }).retry.jitter).toBe(1);
    expect(configError({ SYMPHONY_RETRY_JITTER: '1.5' }).message).toBe(
      'SYMPHONY_RETRY_JITTER="1.5" is invalid: expected a number from 0 to 1',
    );
  });

  it('accepts pino levels only', () => {
    expect(configError({ LOG_LEVEL: 'verbose' }).message).toBe(
      'LOG_LEVEL="verbose" is invalid: expected one of fatal, error, warn, info, debug, trace, silent',
    );
  });

  it('refuses a role name that is not a plain identifier', () => {
    const error = configError({ SYMPHONY_DB_ROLE: 'executor; DROP TABLE x' });
    expect(error.variable).toBe('SYMPHONY_DB_ROLE');
    expect(error.message).toContain('expected a lowercase PostgreSQL role name');
  });

  it('never echoes DATABASE_URL, which holds a password', () => {
    const error = configError({ DATABASE_URL: 'mysql://relay:hunter2@db/symphony' });
    expect(error.variable).toBe('DATABASE_URL');
    expect(error.message).toContain('DATABASE_URL');
    expect(error.message).toContain('expected a postgres:// or postgresql:// URL');
    expect(error.message).not.toContain('hunter2');
    expect(error.message).not.toContain('mysql');
  });

  it('reads DATABASE_URL from the file DATABASE_URL_FILE names (a mounted secret)', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'symphony-database-url-'));
    const file = path.join(dir, 'database-url');
    writeFileSync(file, 'postgres://relay:hunter2@db:5432/symphony\n');
    expect(loadConfig({ DATABASE_URL_FILE: file }).databaseUrl).toBe(
      'postgres://relay:hunter2@db:5432/symphony',
    );

    writeFileSync(file, 'mysql://relay:hunter2@db/symphony\n');
    const invalid = configError({ DATABASE_URL_FILE: file });
    expect(invalid.variable).toBe('DATABASE_URL_FILE');
    expect(invalid.message).toBe(
      'the DATABASE_URL in DATABASE_URL_FILE (value not shown: it may contain a password) is invalid: expected a postgres:// or postgresql:// URL',
    );

    const unreadable = configError({ DATABASE_URL_FILE: path.join(dir, 'absent') });
    expect(unreadable.message).toContain('cannot be read (ENOENT)');
    const both = configError({ DATABASE_URL: 'postgres://db/x', DATABASE_URL_FILE: file });
    expect(both.message).toContain('DATABASE_URL and DATABASE_URL_FILE are both set');
  });

  it('makes DATABASE_URL required for run', () => {
    const config = loadConfig({});
    expect(() => requireDatabaseUrl(config)).toThrow(ConfigError);
    expect(() => requireDatabaseUrl(config)).toThrow(/DATABASE_URL is not set/);
  });

  it('refuses an unknown SYMPHONY_ variable and names the nearest known one', () => {
    const error = configError({ SYMPHONY_CONCURENCY: '64' });
    expect(error.variable).toBe('SYMPHONY_CONCURENCY');
    expect(error.message).toContain('SYMPHONY_CONCURENCY is not a known setting');
    expect(error.message).toContain('did you mean SYMPHONY_CONCURRENCY?');
  });

  it('ignores the service-link variables Kubernetes injects for Services named symphony-*', () => {
    const config = loadConfig({
      SYMPHONY_RELAY_SERVICE_HOST: '10.96.12.7',
      SYMPHONY_RELAY_SERVICE_PORT: '9464',
      SYMPHONY_RELAY_SERVICE_PORT_METRICS: '9464',
      SYMPHONY_RELAY_PORT: 'tcp://10.96.12.7:9464',
      SYMPHONY_RELAY_PORT_9464_TCP: 'tcp://10.96.12.7:9464',
      SYMPHONY_RELAY_PORT_9464_TCP_PROTO: 'tcp',
      SYMPHONY_RELAY_PORT_9464_TCP_PORT: '9464',
      SYMPHONY_RELAY_PORT_9464_TCP_ADDR: '10.96.12.7',
      SYMPHONY_SERVICE_HOST: 'fd00::7',
      SYMPHONY_PORT: 'tcp://[fd00::7]:80',
      SYMPHONY_CONCURRENCY: '8',
    });
    expect(config.concurrency).toBe(8);
  });

  it('still refuses a typo that looks like a service link but has not its value shape', () => {
    expect(configError({ SYMPHONY_HTT_PORT: '9465' }).variable).toBe('SYMPHONY_HTT_PORT');
    expect(configError({ SYMPHONY_RELAY_SERVICE_HOST: 'db.example' }).variable).toBe(
      'SYMPHONY_RELAY_SERVICE_HOST',
    );
  });

  it('does not echo the value of an unknown variable (it might be a secret)', () => {
    const error = configError({ SYMPHONY_DATABASE_PASSWORD: 'hunter2' });
    expect(error.message).not.toContain('hunter2');
  });

  it('ignores variables outside its namespace', () => {
    expect(() => loadConfig({ PATH: '/usr/bin', NODE_ENV: 'production' })).not.toThrow();
  });

  it('refuses a retry cap below the base delay', () => {
    const error = configError({ SYMPHONY_RETRY_BASE_MS: '5000', SYMPHONY_RETRY_MAX_MS: '1000' });
    expect(error.variable).toBe('SYMPHONY_RETRY_MAX_MS');
    expect(error.message).toContain('SYMPHONY_RETRY_MAX_MS=1000');
    expect(error.message).toContain('SYMPHONY_RETRY_BASE_MS=5000');
  });
});

describe('the lease must outlast the dispatch', () => {
  it('refuses to start when lease_seconds*1000 < dispatch timeout + margin, and says what to change', () => {
    const error = configError({
      SYMPHONY_LEASE_SECONDS: '15',
      SYMPHONY_DISPATCH_TIMEOUT_MS: '15000',
      SYMPHONY_LEASE_MARGIN_MS: '5000',
    });
    expect(error.variable).toBe('SYMPHONY_LEASE_SECONDS');
    expect(error.message).toContain('SYMPHONY_LEASE_SECONDS=15');
    expect(error.message).toContain('SYMPHONY_DISPATCH_TIMEOUT_MS=15000');
    expect(error.message).toContain('SYMPHONY_LEASE_MARGIN_MS=5000');
    expect(error.message).toContain('raise SYMPHONY_LEASE_SECONDS to at least 20');
  });

  it('accepts a lease exactly as long as timeout plus margin', () => {
    const config = loadConfig({
      SYMPHONY_LEASE_SECONDS: '20',
      SYMPHONY_DISPATCH_TIMEOUT_MS: '15000',
      SYMPHONY_LEASE_MARGIN_MS: '5000',
    });
    expect(config.leaseSeconds).toBe(20);
  });

  it('refuses a rail timeout longer than the dispatch timeout the lease is sized for', () => {
    const error = configError({
      SYMPHONY_RAILS: JSON.stringify({
        card: { type: 'http', url: 'https://rail.example/pay', timeoutMs: 20000 },
      }),
    });
    expect(error.variable).toBe('SYMPHONY_RAILS');
    expect(error.message).toContain('rail "card"');
    expect(error.message).toContain('SYMPHONY_DISPATCH_TIMEOUT_MS=15000');
  });
});

describe('rails configuration', () => {
  const rails = {
    card: {
      type: 'http',
      url: 'https://rail.example/pay',
      headers: { Authorization: 'Bearer rail-secret-token' },
    },
    sandbox: { type: 'sandbox', seed: 7 },
  };

  it('reads SYMPHONY_RAILS', () => {
    const config = loadConfig({ SYMPHONY_RAILS: JSON.stringify(rails) });
    expect(config.railsSource).toBe('SYMPHONY_RAILS');
    expect(config.rails.card).toMatchObject({
      type: 'http',
      url: 'https://rail.example/pay',
      idempotencyHeader: 'Idempotency-Key',
      referenceField: 'reference',
    });
    expect(config.rails.sandbox).toMatchObject({ type: 'sandbox', seed: 7 });
  });

  it('reads SYMPHONY_RAILS_FILE', () => {
    const config = loadConfig({ SYMPHONY_RAILS_FILE: railsFile(JSON.stringify(rails)) });
    expect(config.railsSource).toBe('SYMPHONY_RAILS_FILE');
    expect(Object.keys(config.rails).sort()).toEqual(['card', 'sandbox']);
  });

  it('refuses both at once', () => {
    const error = configError({
      SYMPHONY_RAILS: JSON.stringify(rails),
      SYMPHONY_RAILS_FILE: railsFile(JSON.stringify(rails)),
    });
    expect(error.message).toContain('SYMPHONY_RAILS and SYMPHONY_RAILS_FILE are both set');
  });

  it('names a rails file it cannot read', () => {
    const error = configError({ SYMPHONY_RAILS_FILE: '/nonexistent/rails.json' });
    expect(error.message).toBe(
      'SYMPHONY_RAILS_FILE="/nonexistent/rails.json" is invalid: expected a readable file with the rails JSON (ENOENT)',
    );
  });

  it('reports a JSON syntax error without quoting the JSON (it holds credentials)', () => {
    const broken = '{"card":{"type":"http","headers":{"Authorization":"Bearer rail-secret-token"}';
    const inline = configError({ SYMPHONY_RAILS: broken });
    expect(inline.message).toContain('SYMPHONY_RAILS is invalid: expected JSON');
    expect(inline.message).not.toContain('rail-secret-token');
    const file = configError({ SYMPHONY_RAILS_FILE: railsFile(broken) });
    expect(file.message).toContain('SYMPHONY_RAILS_FILE is invalid: expected JSON');
    expect(file.message).not.toContain('rail-secret-token');
  });

  it('names the source and the rail key of an invalid entry', () => {
    const inline = configError({ SYMPHONY_RAILS: JSON.stringify({ card: { type: 'ftp' } }) });
    expect(inline.message).toBe(
      'SYMPHONY_RAILS rail "card": "type" is invalid: expected one of "sandbox", "http", "module"',
    );
    const file = configError({
      SYMPHONY_RAILS_FILE: railsFile(JSON.stringify({ card: { type: 'http' } })),
    });
    expect(file.message).toBe(
      'SYMPHONY_RAILS_FILE rail "card": "url" is invalid: expected a non-empty string',
    );
  });
});

describe('CONFIG_VARIABLES', () => {
  it('documents every variable with its default, for --help and the README', () => {
    const names = CONFIG_VARIABLES.map((variable) => variable.name);
    expect(names).toEqual(
      expect.arrayContaining([
        'DATABASE_URL',
        'SYMPHONY_DB_ROLE',
        'SYMPHONY_WORKER_ID',
        'SYMPHONY_CONCURRENCY',
        'SYMPHONY_LEASE_SECONDS',
        'SYMPHONY_RAILS',
        'SYMPHONY_RAILS_FILE',
        'LOG_LEVEL',
      ]),
    );
    expect(CONFIG_VARIABLES.find((v) => v.name === 'SYMPHONY_CONCURRENCY')).toMatchObject({
      default: '512',
      allowed: 'an integer from 1 to 1024',
    });
    expect(CONFIG_VARIABLES.find((v) => v.name === 'DATABASE_URL')?.default).toBeNull();
    for (const variable of CONFIG_VARIABLES) {
      expect(variable.description.length).toBeGreaterThan(10);
      expect(formatConfigHelp()).toContain(variable.name);
      expect(formatConfigMarkdown()).toContain(`\`${variable.name}\``);
    }
  });

  it('has defaults that pass their own validation', () => {
    const env = Object.fromEntries(
      CONFIG_VARIABLES.filter((v) => v.default !== null && !v.default.startsWith('<')).map((v) => [
        v.name,
        v.default as string,
      ]),
    );
    expect(() => loadConfig(env)).not.toThrow();
  });
});
