import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { createLogger, redactUrl } from '../../src/observability/logger.ts';
import { captureLogs } from '../support/log-capture.ts';

const PAYLOAD_MARKER = 'IBAN-DE89370400440532013000';
const PASSWORD = 'pg-hunter2-secret';
const RAIL_TOKEN = 'rail-bearer-token-xyz';

function capturedLogger() {
  const capture = captureLogs();
  const logger = createLogger({ level: 'debug', name: 'symphony-relay', destination: capture });
  return { capture, logger };
}

describe('createLogger', () => {
  it('writes JSON lines with the level label, name and message', () => {
    const { capture, logger } = capturedLogger();
    logger.child({ workerId: 'relay-1' }).info({ outboxId: 'o-1' }, 'dispatched');
    expect(capture.records()).toEqual([
      expect.objectContaining({
        level: 'info',
        name: 'symphony-relay',
        workerId: 'relay-1',
        outboxId: 'o-1',
        msg: 'dispatched',
      }),
    ]);
  });

  it('never writes payloads, passwords, connection strings or rail headers, at any depth', () => {
    const { capture, logger } = capturedLogger();
    const item = { outboxId: 'o-1', payload: { creditorIban: PAYLOAD_MARKER } };
    logger.info({ payload: item.payload }, 'top level');
    logger.info({ item }, 'one level down');
    logger.info({ batch: { items: [item] } }, 'inside an array');
    logger.info({ a: { b: { c: { d: { payload: PAYLOAD_MARKER } } } } }, 'deep');
    logger.info({ password: PASSWORD, DATABASE_URL: `postgres://u:${PASSWORD}@db/x` }, 'env');
    logger.info({ connectionString: `postgres://u:${PASSWORD}@db/x` }, 'pool');
    logger.info({ rail: { headers: { Authorization: `Bearer ${RAIL_TOKEN}` } } }, 'rail');
    logger.info({ authorization: `Bearer ${RAIL_TOKEN}` }, 'auth');
    logger.child({ databaseUrl: `postgres://u:${PASSWORD}@db/x` }).info('child binding');

    const text = capture.text();
    expect(text).not.toContain(PAYLOAD_MARKER);
    expect(text).not.toContain(PASSWORD);
    expect(text).not.toContain(RAIL_TOKEN);
    expect(text).toContain('[redacted]');
    // The identifiers an operator needs survive.
    expect(
      capture.records().filter((record) => JSON.stringify(record).includes('o-1')),
    ).toHaveLength(2);
  });

  it('leaves the logged object itself untouched', () => {
    const { logger } = capturedLogger();
    const item = { outboxId: 'o-1', payload: { creditorIban: PAYLOAD_MARKER } };
    logger.info({ item }, 'dispatching');
    expect(item.payload.creditorIban).toBe(PAYLOAD_MARKER);
  });

  it('can log the whole loaded configuration without leaking the database password or rail credentials', () => {
    const { capture, logger } = capturedLogger();
    const config = loadConfig({
      DATABASE_URL: `postgres://relay:${PASSWORD}@db:5432/symphony`,
      SYMPHONY_RAILS: JSON.stringify({
        card: {
          type: 'http',
          url: 'https://rail.example/pay',
          headers: { Authorization: `Bearer ${RAIL_TOKEN}` },
        },
      }),
    });
    logger.info({ config }, 'starting');
    expect(capture.text()).not.toContain(PASSWORD);
    expect(capture.text()).not.toContain(RAIL_TOKEN);
    expect(capture.text()).toContain('https://rail.example/pay');
  });

  it('honours the level', () => {
    const capture = captureLogs();
    const logger = createLogger({ level: 'warn', name: 'x', destination: capture });
    logger.info('hidden');
    logger.warn('shown');
    expect(capture.records().map((record) => record.msg)).toEqual(['shown']);
  });
});

describe('redactUrl', () => {
  it('hides the password and keeps what identifies the server', () => {
    const shown = redactUrl(`postgres://relay:${PASSWORD}@db.internal:5432/symphony`);
    expect(shown).not.toContain(PASSWORD);
    expect(shown).toBe('postgres://relay:***@db.internal:5432/symphony');
  });

  it('hides secret query parameters', () => {
    const shown = redactUrl(`postgres://db/symphony?sslmode=require&password=${PASSWORD}`);
    expect(shown).not.toContain(PASSWORD);
    expect(shown).toContain('sslmode=require');
  });

  it('shows nothing of a string that is not a URL (a keyword/value connection string)', () => {
    expect(redactUrl(`host=db password=${PASSWORD}`)).toBe('[unparseable URL]');
  });

  it('leaves a URL without secrets as it is', () => {
    expect(redactUrl('https://rail.example/pay')).toBe('https://rail.example/pay');
  });
});
