import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { relayerPoolSize } from '../../src/cli/runtime.ts';
import { freshDatabase } from '../support/database.ts';
import { closedPortUrl } from '../support/rail-server.ts';
import { relayerDatabase, spawnRelayer } from '../support/relayer.ts';

/** The pool of a worker at the default settings (completion batching on). */
const DEFAULT_POOL_SIZE = relayerPoolSize({ concurrency: 512, completionBatch: true });

async function runToExit(env: NodeJS.ProcessEnv) {
  const relayer = spawnRelayer(env);
  const exit = await relayer.exited;
  return { code: exit.code, output: relayer.output() };
}

/** The failure is one line for the operator: no stack trace, no unhandled 'error' event. */
function expectOneCleanLine(output: string): void {
  expect(output).not.toMatch(/Unhandled 'error' event|\n\s+at /);
  expect(
    output
      .trim()
      .split('\n')
      .filter((line) => line.startsWith('symphony-relay:')),
  ).toHaveLength(1);
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

  it('when PostgreSQL refuses the connection, saying what to check', async () => {
    const target = await relayerDatabase();
    const url = new URL(target.login.url);
    url.port = new URL(await closedPortUrl()).port;
    const result = await runToExit(target.env({ DATABASE_URL: url.toString() }));
    expect(result.code).not.toBe(0);
    expect(result.output).toMatch(
      /cannot connect to PostgreSQL at 127\.0\.0\.1:\d+\/t_\S+: connection refused\. Is the server \(or PgBouncer\) running/,
    );
    expect(result.output).not.toContain(target.login.password);
    expectOneCleanLine(result.output);
  });

  it('when sessions of the login do not act as symphony_executor (no role-level default)', async () => {
    const target = await relayerDatabase();
    const member = await target.db.createLoginRole(['symphony_executor'], { sessionRole: null });
    const result = await runToExit(target.env({ DATABASE_URL: member.url }));
    expect(result.code).not.toBe(0);
    expect(result.output).toContain(
      `sessions of database role "${member.name}" act as "${member.name}", not symphony_executor`,
    );
    expect(result.output).toContain(`roles create-login --name ${member.name}`);
    expectOneCleanLine(result.output);
  });

  it('when the metrics port is taken, exiting at once instead of after the pool idles out', async () => {
    const target = await relayerDatabase();
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const { port } = holder.address() as net.AddressInfo;
    try {
      const result = await runToExit(
        target.env({ SYMPHONY_HTTP_HOST: '127.0.0.1', SYMPHONY_HTTP_PORT: String(port) }),
      );
      expect(result.code).not.toBe(0);
      expect(result.output).toMatch(/could not listen on 127\.0\.0\.1:\d+ \(EADDRINUSE\)/);
      expectOneCleanLine(result.output);
    } finally {
      holder.close();
    }
  });

  it('when the pool cannot open the connections a worker keeps, naming how many', async () => {
    const target = await relayerDatabase();
    await target.db.owner.query(`ALTER ROLE ${target.login.name} CONNECTION LIMIT 2`);
    const result = await runToExit(target.env());
    expect(result.code).toBe(1);
    expect(result.output).toMatch(
      new RegExp(
        `could not open the ${DEFAULT_POOL_SIZE} database connections a worker keeps: .*SQLSTATE 53300`,
      ),
    );
    expectOneCleanLine(result.output);
  });

  it('when the LISTEN connection is refused, instead of retrying it for ever', async () => {
    const target = await relayerDatabase();
    // The worker keeps its pool's connections open; the LISTEN connection is one more (53300).
    await target.db.owner.query(
      `ALTER ROLE ${target.login.name} CONNECTION LIMIT ${DEFAULT_POOL_SIZE}`,
    );
    const relayer = spawnRelayer(target.env());
    const exit = await Promise.race([
      relayer.exited,
      new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 60_000)),
    ]);
    relayer.child.kill('SIGKILL');
    expect(exit).toMatchObject({ code: 1 });
    expect(relayer.output()).toMatch(/the LISTEN connection failed: .*SQLSTATE 53300/);
    expect(relayer.output()).toMatch(/SYMPHONY_POLL_ONLY=true/);
    expectOneCleanLine(relayer.output());
  });
});
