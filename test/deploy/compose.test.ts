import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBinary, type BinaryRequirement } from '../support/processes.ts';
import { DOCKER_COMPOSE, REPO_ROOT } from '../support/prometheus-tools.ts';

const SH: BinaryRequirement = { binary: 'sh', installHint: 'a POSIX shell (Debian: dash)' };

/** The files deploy/make-secrets.sh writes and docker-compose.yml mounts as secrets. */
const SECRET_FILES = [
  'postgres-password',
  'owner-database-url',
  'relay-password',
  'relay-database-url',
  'grafana-admin-password',
];

/** The lines of one service in `docker-compose config` output (services sit at two spaces). */
function serviceBlock(rendered: string, service: string): string {
  const lines = rendered.split('\n');
  const start = lines.indexOf(`  ${service}:`);
  if (start < 0) throw new Error(`service ${service} is missing from the rendered compose file:\n${rendered}`);
  const end = lines.findIndex((line, index) => index > start && /^ {0,2}\S/.test(line));
  return lines.slice(start, end < 0 ? undefined : end).join('\n');
}

// Validates docker-compose.yml the way an operator starts it: a copy of the committed example
// env file, secrets made by deploy/make-secrets.sh. No Docker daemon exists here, so the stack
// is rendered (`docker-compose config`) and its shell steps run on this machine, not started.
describe('docker-compose.yml', () => {
  let workDir: string;
  let secretsDir: string;
  let exampleEnv: string;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'symphony-compose-'));
    secretsDir = join(workDir, 'secrets');
    exampleEnv = join(workDir, 'example.env');
    const example = await readFile(join(REPO_ROOT, 'deploy/.env.example'), 'utf8');
    expect(example).toMatch(/^SECRETS_DIR=.*$/m);
    await writeFile(exampleEnv, example.replace(/^SECRETS_DIR=.*$/m, `SECRETS_DIR=${secretsDir}`));
    const made = await makeSecrets();
    expect(made.code, made.stderr).toBe(0);
  });

  afterAll(async () => {
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  const compose = (envFile: string, args: string[]) =>
    runBinary(DOCKER_COMPOSE, ['--env-file', envFile, '-f', join(REPO_ROOT, 'docker-compose.yml'), ...args], {
      cwd: REPO_ROOT,
    });
  const makeSecrets = () =>
    runBinary(SH, [join(REPO_ROOT, 'deploy/make-secrets.sh'), exampleEnv], { cwd: REPO_ROOT });
  const checkSecrets = (dir: string) =>
    runBinary(SH, [join(REPO_ROOT, 'deploy/check-secrets.sh'), dir], { cwd: REPO_ROOT });
  const secret = (name: string) => readFile(join(secretsDir, name), 'utf8').then((text) => text.trim());

  it('is valid with the example env file', async () => {
    const result = await compose(exampleEnv, ['config', '-q']);
    expect(result.code, result.stderr).toBe(0);
  });

  it('runs the relayer as three replicas on the login role, after migrate and bootstrap succeeded', async () => {
    const result = await compose(exampleEnv, ['config']);
    expect(result.code, result.stderr).toBe(0);
    const relayer = serviceBlock(result.stdout, 'relayer');
    expect(relayer).toContain('replicas: 3');
    expect(relayer).toContain('DATABASE_URL_FILE: /run/secrets/relay-database-url');
    expect(relayer).toContain('- source: relay-database-url');
    expect(relayer).toMatch(/bootstrap:\n\s+condition: service_completed_successfully/);
    expect(relayer).toContain('http://mock-rail:8080');
  });

  it('exposes no Prometheus lifecycle API and binds the relayer probes and mock rail for the compose network only', async () => {
    const result = await compose(exampleEnv, ['config']);
    expect(result.code, result.stderr).toBe(0);
    expect(serviceBlock(result.stdout, 'prometheus')).not.toContain('--web.enable-lifecycle');
    expect(serviceBlock(result.stdout, 'relayer')).toContain('SYMPHONY_HTTP_HOST: 0.0.0.0');
    expect(serviceBlock(result.stdout, 'relayer')).not.toMatch(/^\s+ports:/m);
    expect(serviceBlock(result.stdout, 'mock-rail')).toMatch(/- --host\n\s+- 0\.0\.0\.0/);
  });

  it('takes every secret as a file: no password or connection string in the rendered config', async () => {
    const result = await compose(exampleEnv, ['config']);
    expect(result.code, result.stderr).toBe(0);
    const rendered = result.stdout;
    for (const name of SECRET_FILES) {
      const value = await secret(name);
      expect(value.length).toBeGreaterThan(0);
      expect(rendered, `${name}'s value is in the rendered config`).not.toContain(value);
      expect(rendered).toContain(`file: ${join(secretsDir, name)}`);
    }
    // Every environment variable naming a password or a connection string points at a file.
    const secretVariables = rendered.match(/^\s+[A-Z_]*(PASSWORD|DATABASE_URL)[A-Z_]*:.*$/gm) ?? [];
    expect(secretVariables.length).toBe(6);
    for (const line of secretVariables) expect(line).toMatch(/_FILE: \/run\/secrets\/[a-z-]+$/);
    expect(rendered).not.toMatch(/postgres:\/\//);
    expect(serviceBlock(rendered, 'postgres')).toContain(
      'POSTGRES_PASSWORD_FILE: /run/secrets/postgres-password',
    );
    expect(serviceBlock(rendered, 'bootstrap')).toContain(
      'SYMPHONY_LOGIN_PASSWORD_FILE: /run/secrets/relay-password',
    );
    expect(serviceBlock(rendered, 'migrate')).toContain(
      'DATABASE_URL_FILE: /run/secrets/owner-database-url',
    );
    expect(serviceBlock(rendered, 'grafana')).toContain(
      'GF_SECURITY_ADMIN_PASSWORD__FILE: /run/secrets/grafana-admin-password',
    );
  });

  it('checks the secrets before PostgreSQL starts, so it never initialises with a placeholder', async () => {
    const result = await compose(exampleEnv, ['config']);
    expect(result.code, result.stderr).toBe(0);
    expect(serviceBlock(result.stdout, 'postgres')).toMatch(
      /depends_on:\n\s+check-secrets:\n\s+condition: service_completed_successfully/,
    );
    const check = serviceBlock(result.stdout, 'check-secrets');
    for (const name of SECRET_FILES) expect(check).toContain(`- source: ${name}`);
  });

  it('make-secrets.sh writes random, consistent secrets readable by the containers in a private directory, and keeps them on a re-run', async () => {
    const ownerPassword = await secret('postgres-password');
    const relayPassword = await secret('relay-password');
    expect(ownerPassword).toMatch(/^[0-9a-f]{32}$/);
    expect(relayPassword).toMatch(/^[0-9a-f]{32}$/);
    expect(relayPassword).not.toBe(ownerPassword);
    expect(await secret('owner-database-url')).toBe(
      `postgres://symphony_owner:${ownerPassword}@postgres:5432/symphony`,
    );
    expect(await secret('relay-database-url')).toBe(
      `postgres://relay_login:${relayPassword}@postgres:5432/symphony`,
    );
    expect((await stat(secretsDir)).mode & 0o777).toBe(0o700);
    for (const name of SECRET_FILES) {
      expect((await stat(join(secretsDir, name))).mode & 0o777).toBe(0o644);
    }

    const again = await makeSecrets();
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('kept');
    expect(again.stdout + again.stderr).not.toContain(ownerPassword);
    expect(await secret('postgres-password')).toBe(ownerPassword);
  });

  it('check-secrets.sh passes made secrets and refuses a placeholder, an empty, a missing or a private secret with one line each, never the contents', async () => {
    const passed = await checkSecrets(secretsDir);
    expect(passed.code, passed.stderr).toBe(0);
    expect(passed.stdout).toContain('every secret is set and none is a placeholder');

    const badDir = await mkdtemp(join(workDir, 'bad-'));
    const placeholder = 'change-me-owner-password';
    await writeFile(join(badDir, 'postgres-password'), `${placeholder}\n`);
    await writeFile(join(badDir, 'owner-database-url'), `postgres://o:${placeholder}@postgres/db\n`);
    await writeFile(join(badDir, 'relay-password'), '\n');
    await writeFile(join(badDir, 'grafana-admin-password'), 'a-real-enough-secret\n');
    await chmod(join(badDir, 'grafana-admin-password'), 0o600);
    const refused = await checkSecrets(badDir);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr.trim().split('\n')).toEqual([
      'check-secrets: secret postgres-password is a placeholder (it contains change-me, changeme, placeholder or example): write a real secret into it or delete it and run sh deploy/make-secrets.sh deploy/.env',
      'check-secrets: secret owner-database-url is a placeholder (it contains change-me, changeme, placeholder or example): write a real secret into it or delete it and run sh deploy/make-secrets.sh deploy/.env',
      'check-secrets: secret relay-password is empty: write a real secret into it or delete it and run sh deploy/make-secrets.sh deploy/.env',
      'check-secrets: secret relay-database-url is missing or unreadable: run sh deploy/make-secrets.sh deploy/.env',
      "check-secrets: secret grafana-admin-password is not readable by the containers' users: chmod 644 it (keep its directory private, chmod 700)",
    ]);
    expect(refused.stderr).not.toContain('a-real-enough-secret');
  });

  it('refuses to render without a variable, naming it', async () => {
    const example = await readFile(exampleEnv, 'utf8');
    const withoutSecretsDir = join(workDir, 'no-secrets-dir.env');
    await writeFile(withoutSecretsDir, example.replace(/^SECRETS_DIR=.*$/m, ''));
    const result = await compose(withoutSecretsDir, ['config', '-q']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('set SECRETS_DIR in deploy/.env');
  });
});
