import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBinary } from '../support/processes.ts';
import { DOCKER_COMPOSE, REPO_ROOT } from '../support/prometheus-tools.ts';

/** The lines of one service in `docker-compose config` output (services sit at two spaces). */
function serviceBlock(rendered: string, service: string): string {
  const lines = rendered.split('\n');
  const start = lines.indexOf(`  ${service}:`);
  if (start < 0) throw new Error(`service ${service} is missing from the rendered compose file:\n${rendered}`);
  const end = lines.findIndex((line, index) => index > start && /^ {0,2}\S/.test(line));
  return lines.slice(start, end < 0 ? undefined : end).join('\n');
}

// Validates docker-compose.yml the way an operator starts it: with a copy of the committed
// example env file. No Docker daemon is needed for `config`.
describe('docker-compose.yml', () => {
  let workDir: string;
  let exampleEnv: string;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'symphony-compose-'));
    exampleEnv = join(workDir, 'example.env');
    await copyFile(join(REPO_ROOT, 'deploy/.env.example'), exampleEnv);
  });

  afterAll(async () => {
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  const compose = (envFile: string, args: string[]) =>
    runBinary(DOCKER_COMPOSE, ['--env-file', envFile, '-f', join(REPO_ROOT, 'docker-compose.yml'), ...args], {
      cwd: REPO_ROOT,
    });

  it('is valid with the example env file', async () => {
    const result = await compose(exampleEnv, ['config', '-q']);
    expect(result.code, result.stderr).toBe(0);
  });

  it('runs the relayer as three replicas on the login role, after migrate and bootstrap succeeded', async () => {
    const result = await compose(exampleEnv, ['config']);
    expect(result.code, result.stderr).toBe(0);
    const relayer = serviceBlock(result.stdout, 'relayer');
    expect(relayer).toContain('replicas: 3');
    expect(relayer).toContain('DATABASE_URL: postgres://relay_login:change-me-relayer-password@postgres:5432/symphony');
    expect(relayer).toMatch(/bootstrap:\n\s+condition: service_completed_successfully/);
    expect(relayer).toContain('http://mock-rail:8080');
  });

  it('refuses to render without a secret, naming the missing variable', async () => {
    const example = await readFile(exampleEnv, 'utf8');
    const withoutPassword = join(workDir, 'no-password.env');
    await writeFile(withoutPassword, example.replace(/^SYMPHONY_RELAY_DB_PASSWORD=.*$/m, ''));
    const result = await compose(withoutPassword, ['config', '-q']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('set SYMPHONY_RELAY_DB_PASSWORD in deploy/.env');
  });
});
