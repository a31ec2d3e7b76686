import { createHmac, timingSafeEqual } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config-error.ts';
import type { DispatchOutcome } from '../../src/rails/rail.ts';
import { buildRailRegistry } from '../../src/rails/registry.ts';
import { dispatchRequest } from '../support/dispatch-requests.ts';
import { enqueueItems } from '../support/outbox-fixtures.ts';
import { relayerDatabase, startRelayer, waitForAllTerminal } from '../support/relayer.ts';
import { makePki, type Pki } from '../support/tls-certs.ts';

const SIGNING_KEY = 'k'.repeat(24) + '-bank-hmac-secret-0123456789';

interface SeenRequest {
  clientName: string | undefined;
  signatureValid: boolean;
  timestamp: string | undefined;
  idempotencyKey: string | undefined;
  traceparent: string | undefined;
}

let pki: Pki;
let server: https.Server;
let url: string;
let keyFile: string;
let wrongKeyFile: string;
const seen: SeenRequest[] = [];

/**
 * A bank's endpoint as banks run them: TLS with a certificate for a DNS name, a client
 * certificate required and verified against the bank's CA, and an HMAC signature over the
 * timestamp and the body checked before anything else.
 */
beforeAll(async () => {
  pki = await makePki();
  keyFile = join(pki.dir, 'signing.key');
  wrongKeyFile = join(pki.dir, 'wrong-signing.key');
  await writeFile(keyFile, `${SIGNING_KEY}\n`);
  await writeFile(wrongKeyFile, 'w'.repeat(40));
  server = https.createServer(
    {
      cert: await pki.read(pki.serverCert),
      key: await pki.read(pki.serverKey),
      ca: await pki.read(pki.caCert),
      requestCert: true,
      rejectUnauthorized: true,
    },
    (request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const timestamp = header(request.headers['x-bank-timestamp']);
        const signature = header(request.headers['x-bank-signature']) ?? '';
        const expected = createHmac('sha256', SIGNING_KEY)
          .update(`${timestamp}.${body}`)
          .digest('hex');
        const signatureValid =
          signature.length === expected.length &&
          timingSafeEqual(Buffer.from(signature), Buffer.from(expected)) &&
          Math.abs(Date.now() / 1000 - Number(timestamp)) < 300;
        const peer = (request.socket as TLSSocket).getPeerCertificate();
        seen.push({
          clientName: header(peer.subject?.CN),
          signatureValid,
          timestamp,
          idempotencyKey: header(request.headers['idempotency-key']),
          traceparent: header(request.headers.traceparent),
        });
        response.writeHead(signatureValid ? 200 : 401, { 'content-type': 'application/json' });
        response.end(JSON.stringify(signatureValid ? { reference: `bank-${seen.length}` } : {}));
      });
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/payments`;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function bankRail(overrides: Record<string, unknown> = {}) {
  const entry: Record<string, unknown> = {
    type: 'http',
    url,
    clientCertFile: pki.clientCert,
    clientKeyFile: pki.clientKey,
    caFile: pki.caCert,
    serverName: pki.serverName,
    signing: { keyFile, timestampHeader: 'X-Bank-Timestamp', signatureHeader: 'X-Bank-Signature' },
    ...overrides,
  };
  for (const [key, value] of Object.entries(entry)) if (value === undefined) delete entry[key];
  return { bank: entry };
}

async function dispatchOnce(rails: Record<string, unknown>, traceparent?: string) {
  const registry = buildRailRegistry(rails);
  try {
    const request = dispatchRequest({ railType: 'bank', ...(traceparent ? { traceparent } : {}) });
    const outcome = (await registry.get('bank')?.dispatch(request)) as DispatchOutcome;
    return { outcome, request };
  } finally {
    await registry.close();
  }
}

describe('http rail: mutual TLS and signed requests against a bank-like HTTPS server', () => {
  it('presents the client certificate, trusts the private CA, checks the server name and signs', async () => {
    const before = seen.length;
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const { outcome, request } = await dispatchOnce(bankRail(), traceparent);
    expect(outcome).toEqual({
      state: 'DISPATCHED',
      railReference: `bank-${before + 1}`,
      railCode: '200',
    });
    expect(seen.at(-1)).toEqual({
      clientName: 'client',
      signatureValid: true,
      timestamp: expect.stringMatching(/^\d{10}$/),
      idempotencyKey: request.idempotencyKey,
      traceparent,
    });
  });

  it.each([
    ['no client certificate', { clientCertFile: undefined, clientKeyFile: undefined }],
    ['a certificate from a CA the bank does not trust', 'stranger'],
  ])(
    'is refused at the handshake with %s: RETRYABLE NETWORK_ERROR, nothing delivered',
    async (_label, change) => {
      const before = seen.length;
      const overrides =
        change === 'stranger'
          ? { clientCertFile: pki.strangerCert, clientKeyFile: pki.strangerKey }
          : change;
      const { outcome } = await dispatchOnce(bankRail(overrides as Record<string, unknown>));
      expect(outcome).toMatchObject({ state: 'RETRYABLE', errorCode: 'NETWORK_ERROR' });
      expect(seen.length).toBe(before);
    },
  );

  it.each([
    [
      'without serverName (the certificate names bank.rail.test, not 127.0.0.1)',
      { serverName: undefined },
    ],
    ['without caFile (the bank CA is not a public root)', { caFile: undefined }],
  ])('refuses the server %s: RETRYABLE NETWORK_ERROR', async (_label, overrides) => {
    const before = seen.length;
    const { outcome } = await dispatchOnce(bankRail(overrides));
    expect(outcome).toMatchObject({ state: 'RETRYABLE', errorCode: 'NETWORK_ERROR' });
    expect((outcome as { errorMessage?: string }).errorMessage).toMatch(
      /ERR_TLS_CERT_ALTNAME_INVALID|certificate/i,
    );
    expect(seen.length).toBe(before);
  });

  it('is refused by the bank when signed with the wrong key (FAILED HTTP_401)', async () => {
    const { outcome } = await dispatchOnce(
      bankRail({
        signing: {
          keyFile: wrongKeyFile,
          timestampHeader: 'X-Bank-Timestamp',
          signatureHeader: 'X-Bank-Signature',
        },
      }),
    );
    expect(outcome).toMatchObject({ state: 'FAILED', errorCode: 'HTTP_401' });
    expect(seen.at(-1)?.signatureValid).toBe(false);
  });

  it('delivers through a running relayer, each item signed and over mutual TLS', async () => {
    const target = await relayerDatabase();
    const before = seen.length;
    const relayer = await startRelayer(target.env({ SYMPHONY_RAILS: JSON.stringify(bankRail()) }));
    try {
      await enqueueItems(target.db.owner, 5, { railType: 'bank', prefix: 'mtls' });
      await waitForAllTerminal(target.db, 5);
    } finally {
      await relayer.stop();
    }
    const delivered = seen.slice(before);
    expect(delivered).toHaveLength(5);
    expect(
      delivered.every((request) => request.signatureValid && request.clientName === 'client'),
    ).toBe(true);
    const { rows } = await target.db.owner.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM payment_outbox_attempts WHERE state = 'DISPATCHED' AND rail_reference LIKE 'bank-%'`,
    );
    expect(rows[0]?.n).toBe(5);
  });
});

describe('http rail: TLS and signing options are checked at start', () => {
  function configError(overrides: Record<string, unknown>): string {
    try {
      buildRailRegistry(bankRail(overrides));
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      const message = (error as Error).message;
      expect(message).not.toContain(SIGNING_KEY);
      expect(message).not.toMatch(/BEGIN|PRIVATE KEY/);
      return message;
    }
    throw new Error('the rail was accepted');
  }

  it.each([
    [
      'a certificate without its key',
      { clientKeyFile: undefined },
      '"clientKeyFile" is invalid: expected both',
    ],
    [
      'a missing file',
      { caFile: '/nonexistent/ca.pem' },
      '"caFile" is invalid: expected a readable file ("/nonexistent/ca.pem": ENOENT)',
    ],
    [
      'a key that does not belong to the certificate',
      { clientKeyFile: 'stranger' },
      '"clientCertFile" is invalid: expected PEM files that load',
    ],
    [
      'TLS options on an http:// URL',
      { url: 'http://127.0.0.1:1/x' },
      '"url" is invalid: expected an https:// URL',
    ],
    ['a bad server name', { serverName: 'bank rail' }, '"serverName" is invalid'],
    [
      'a short signing key',
      { signing: { keyFile: 'short' } },
      '"signing.keyFile" is invalid: expected a file holding a key of at least 32 bytes',
    ],
    [
      'an unknown signing option',
      { signing: { keyFile: 'KEY', algorithm: 'md5' } },
      '"signing.algorithm" is invalid: expected no such option',
    ],
    [
      'a bad signature header',
      { signing: { keyFile: 'KEY', signatureHeader: 'X Sig' } },
      '"signing.signatureHeader" is invalid',
    ],
  ])('refuses %s, naming the option and never the secret', async (_label, overrides, message) => {
    const resolved: Record<string, unknown> = { ...overrides };
    if (resolved.clientKeyFile === 'stranger') resolved.clientKeyFile = pki.strangerKey;
    const signing = resolved.signing as Record<string, unknown> | undefined;
    if (signing?.keyFile === 'KEY') signing.keyFile = keyFile;
    if (signing?.keyFile === 'short') {
      const short = join(pki.dir, 'short.key');
      await writeFile(short, 'too-short');
      signing.keyFile = short;
    }
    expect(configError(resolved)).toContain(`SYMPHONY_RAILS rail "bank": ${message}`);
  });
});
