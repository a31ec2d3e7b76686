import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { RailOptionsReader } from './options.ts';

/**
 * What banks ask of a client: mutual TLS (a client certificate and key, often a private CA
 * and a server name that differs from the address dialled) and signed requests. All
 * material comes from files, so the rails configuration holds paths, never secrets; the
 * files are read once at start and a bad one stops the start with the option's name.
 */
export interface HttpTlsOptions {
  /** PEM client certificate (chain) presented to the rail. */
  cert?: Buffer;
  /** PEM private key of that certificate. */
  key?: Buffer;
  /** Passphrase of an encrypted key. */
  passphrase?: string;
  /** PEM CA bundle that replaces the system roots for this rail. */
  ca?: Buffer;
  /** TLS SNI and certificate name check, when it differs from the URL's host. */
  servername?: string;
}

export interface HttpSigningOptions {
  key: Buffer;
  timestampHeader: string;
  signatureHeader: string;
}

export const SIGNING_DEFAULTS = {
  timestampHeader: 'X-Symphony-Timestamp',
  signatureHeader: 'X-Symphony-Signature',
} as const;

export const TLS_FIELDS = [
  'clientCertFile',
  'clientKeyFile',
  'clientKeyPassphraseFile',
  'caFile',
  'serverName',
] as const;

/** HMAC keys shorter than the hash output weaken it (RFC 2104 §3). */
const MIN_SIGNING_KEY_BYTES = 32;
const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/;

export function parseTlsOptions(
  reader: RailOptionsReader,
  url: string,
): HttpTlsOptions | undefined {
  if (!TLS_FIELDS.some((field) => reader.has(field))) return undefined;
  if (new URL(url).protocol !== 'https:') {
    reader.fail(
      'url',
      'an https:// URL when client certificate, CA or server name options are set',
    );
  }
  const tls: HttpTlsOptions = {};
  if (reader.has('clientCertFile') !== reader.has('clientKeyFile')) {
    reader.fail(
      reader.has('clientCertFile') ? 'clientKeyFile' : 'clientCertFile',
      'both clientCertFile and clientKeyFile, or neither',
    );
  }
  if (reader.has('clientCertFile')) {
    tls.cert = readSecretFile(reader, 'clientCertFile');
    tls.key = readSecretFile(reader, 'clientKeyFile');
  }
  if (reader.has('clientKeyPassphraseFile')) {
    tls.passphrase = trimNewline(readSecretFile(reader, 'clientKeyPassphraseFile')).toString(
      'utf8',
    );
  }
  if (reader.has('caFile')) tls.ca = readSecretFile(reader, 'caFile');
  if (reader.has('serverName')) {
    const name = reader.string('serverName');
    if (!HOST_NAME.test(name)) reader.fail('serverName', 'a DNS host name');
    tls.servername = name;
  }
  try {
    // Parses the PEMs and checks that key and certificate belong together, now rather than
    // on the first payment. OpenSSL's reason names the problem, never the key material.
    createSecureContext(tls);
  } catch (error) {
    reader.fail(
      tls.cert ? 'clientCertFile' : 'caFile',
      `PEM files that load (${(error as Error).message.replace(/\s+/g, ' ').slice(0, 200)})`,
    );
  }
  return tls;
}

export function parseSigningOptions(
  reader: RailOptionsReader,
  headerName: RegExp,
): HttpSigningOptions | undefined {
  if (!reader.has('signing')) return undefined;
  const signing = reader.object('signing');
  const known = ['keyFile', 'timestampHeader', 'signatureHeader'];
  for (const field of Object.keys(signing)) {
    if (!known.includes(field)) {
      reader.fail(`signing.${field}`, `no such option (known options: ${known.join(', ')})`);
    }
  }
  const header = (field: 'timestampHeader' | 'signatureHeader'): string => {
    const value = signing[field] ?? SIGNING_DEFAULTS[field];
    if (typeof value !== 'string' || !headerName.test(value)) {
      reader.fail(`signing.${field}`, 'an HTTP header name');
    }
    return value;
  };
  const keyFile = signing.keyFile;
  if (typeof keyFile !== 'string' || keyFile === '') {
    reader.fail('signing.keyFile', 'the path of the file holding the HMAC-SHA256 key');
  }
  const key = trimNewline(readFile(reader, 'signing.keyFile', keyFile));
  if (key.length < MIN_SIGNING_KEY_BYTES) {
    reader.fail(
      'signing.keyFile',
      `a file holding a key of at least ${MIN_SIGNING_KEY_BYTES} bytes`,
    );
  }
  const options = {
    key,
    timestampHeader: header('timestampHeader'),
    signatureHeader: header('signatureHeader'),
  };
  if (options.timestampHeader.toLowerCase() === options.signatureHeader.toLowerCase()) {
    reader.fail('signing.signatureHeader', 'a header name other than signing.timestampHeader');
  }
  return options;
}

/**
 * The signature a rail checks: lowercase hex HMAC-SHA256 over `<timestamp>.<body>`, where
 * the timestamp is the Unix time in seconds sent in its own header and the body is the
 * exact bytes sent. Binding the timestamp lets the rail refuse replays outside its window.
 */
export function signRequest(key: Buffer, timestamp: string, body: string): string {
  return createHmac('sha256', key).update(`${timestamp}.${body}`).digest('hex');
}

function readSecretFile(reader: RailOptionsReader, field: string): Buffer {
  return readFile(reader, field, reader.string(field));
}

function readFile(reader: RailOptionsReader, field: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'read error';
    return reader.fail(field, `a readable file (${JSON.stringify(path)}: ${code})`);
  }
}

/** Secret files are often written with `echo`, which appends a newline that is not part of the key. */
function trimNewline(bytes: Buffer): Buffer {
  let end = bytes.length;
  if (bytes[end - 1] === 0x0a) end -= 1;
  if (end < bytes.length && bytes[end - 1] === 0x0d) end -= 1;
  return bytes.subarray(0, end);
}
