import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBinary, type BinaryRequirement } from './processes.ts';

const OPENSSL: BinaryRequirement = {
  binary: 'openssl',
  installHint:
    'install the Debian package `openssl` (apt-get install -y openssl; .ci/run does it) — the mutual TLS tests make their certificates with it',
};

export interface Pki {
  dir: string;
  /** Paths of PEM files. */
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A client certificate from a CA the server does not trust. */
  strangerCert: string;
  strangerKey: string;
  /** The DNS name in the server certificate (not the loopback address dialled). */
  serverName: string;
  read(path: string): Promise<Buffer>;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const result = await runBinary(OPENSSL, args, { cwd });
  if (result.code !== 0) {
    throw new Error(`openssl ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
  }
}

/** A CA of our own with a server and a client certificate, and an untrusted client. */
export async function makePki(): Promise<Pki> {
  const dir = await mkdtemp(join(tmpdir(), 'symphony-pki-'));
  const serverName = 'bank.rail.test';
  const days = ['-days', '2'];
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  const ca = async (name: string) =>
    openssl(
      [
        'req',
        '-x509',
        ...newKey,
        ...days,
        '-subj',
        `/CN=${name}`,
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.crt`,
      ],
      dir,
    );
  const leaf = async (name: string, issuer: string, extensions: string) => {
    await openssl(
      ['req', ...newKey, '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`],
      dir,
    );
    await writeFile(join(dir, `${name}.ext`), extensions);
    await openssl(
      [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        `${issuer}.crt`,
        '-CAkey',
        `${issuer}.key`,
        '-CAcreateserial',
        ...days,
        '-extfile',
        `${name}.ext`,
        '-out',
        `${name}.crt`,
      ],
      dir,
    );
  };
  await ca('test-ca');
  await ca('stranger-ca');
  await leaf(
    'server',
    'test-ca',
    `subjectAltName=DNS:${serverName}\nextendedKeyUsage=serverAuth\n`,
  );
  await leaf('client', 'test-ca', 'extendedKeyUsage=clientAuth\n');
  await leaf('stranger', 'stranger-ca', 'extendedKeyUsage=clientAuth\n');
  const path = (file: string) => join(dir, file);
  return {
    dir,
    caCert: path('test-ca.crt'),
    serverCert: path('server.crt'),
    serverKey: path('server.key'),
    clientCert: path('client.crt'),
    clientKey: path('client.key'),
    strangerCert: path('stranger.crt'),
    strangerKey: path('stranger.key'),
    serverName,
    read: (file) => readFile(file),
  };
}
