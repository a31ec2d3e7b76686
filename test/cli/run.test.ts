import { describe, expect, it } from 'vitest';
import { freshDatabase } from '../support/database.ts';
import { relayerDatabase, spawnRelayer } from '../support/relayer.ts';

async function runToExit(env: NodeJS.ProcessEnv) {
  const relayer = spawnRelayer(env);
  const exit = await relayer.exited;
  return { code: exit.code, output: relayer.output() };
}

describe('symphony-relay run refuses to start, with one clear line', () => {
  it('on an invalid setting, naming the variable, the value and what is allowed', async () => {
    const target = await relayerDatabase();
    const result = await runToExit(target.env({ SYMPHONY_CONCURRENCY: 'lots' }));
    expect(result.code).not.toBe(0);
    expect(result.output).toMatch(/SYMPHONY_CONCURRENCY/);
    expect(result.output).toMatch(/"lots"/);
    expect(result.output).toMatch(/integer from 1 to/);
  });

  it('when the lease does not outlast the dispatch timeout plus margin', async () => {
    const target = await relayerDatabase();
    const result = await runToExit(
      target.env({ SYMPHONY_LEASE_SECONDS: '10', SYMPHONY_DISPATCH_TIMEOUT_MS: '15000' }),
    );
    expect(result.code).not.toBe(0);
    expect(result.output).toMatch(/SYMPHONY_LEASE_SECONDS/);
    expect(result.output).toMatch(/SYMPHONY_DISPATCH_TIMEOUT_MS/);
  });

  it('without DATABASE_URL', async () => {
    const result = await runToExit({ LOG_LEVEL: 'silent' });
    expect(result.code).not.toBe(0);
    expect(result.output).toMatch(/DATABASE_URL is not set/);
  });

  it('when the login role is not a member of symphony_executor', async () => {
    const target = await relayerDatabase();
    const outsider = await target.db.createLoginRole(['symphony_readonly']);
    const result = await runToExit(target.env({ DATABASE_URL: outsider.url }));
    expect(result.code).not.toBe(0);
    expect(result.output).toContain(
      `database role "${outsider.name}" is not a member of symphony_executor`,
    );
    expect(result.output).not.toContain(outsider.password);
  });

  it('when no ACTIVE policy exists', async () => {
    const db = await freshDatabase();
    const login = await db.createLoginRole(['symphony_executor']);
    const result = await runToExit({
      DATABASE_URL: login.url,
      SYMPHONY_HTTP_PORT: '0',
      LOG_LEVEL: 'silent',
    });
    expect(result.code).not.toBe(0);
    expect(result.output).toMatch(/no ACTIVE policy in policy_versions/);
    expect(result.output).toMatch(/policy seed --file/);
  });
});
