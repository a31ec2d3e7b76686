import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config-error.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { loadRailRegistry, parseRailsConfig } from '../../src/rails/registry.ts';
import { dispatchRequest } from '../support/dispatch-requests.ts';
import { enqueueItems } from '../support/outbox-fixtures.ts';
import { REPO_ROOT } from '../support/paths.ts';
import { freePort, waitUntil } from '../support/processes.ts';
import { startRailServer, type RailServer } from '../support/rail-server.ts';
import {
  relayerDatabase,
  spawnRelayer,
  waitForAllTerminal,
  waitForLog,
} from '../support/relayer.ts';

const logger = createLogger({ level: 'silent', name: 'module-rail-test' });
const SECRET = 'sk_live_module_option_secret';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'symphony-rail-module-'));
  // The embedded PostgreSQL of `local` runs as its own OS user when the suite runs as root.
  await chmod(dir, 0o755);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes a module into the temp directory and returns its file name. */
async function writeModule(name: string, source: string): Promise<string> {
  await writeFile(join(dir, name), source);
  return name;
}

async function load(module: string, options: Record<string, unknown> = {}) {
  return loadRailRegistry(parseRailsConfig({ acme: { type: 'module', module, options } }), {
    source: 'SYMPHONY_RAILS',
    logger,
    cwd: dir,
  });
}

async function loadError(module: string, options: Record<string, unknown> = {}) {
  const error = await load(module, options).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ConfigError);
  const message = (error as ConfigError).message;
  expect(message).not.toMatch(/\n/);
  expect(message).not.toContain(SECRET);
  return message;
}

describe("module rails: loaded from the user's code and checked at start", () => {
  it('calls the default export with the options and the rail type, and dispatches through it', async () => {
    const file = await writeModule(
      'echo-rail.mjs',
      `export default function (options, context) {
         return {
           kind: 'echo',
           async dispatch(request) {
             return { state: 'DISPATCHED', railReference: options.prefix + context.railType + ':' + request.idempotencyKey };
           },
         };
       }`,
    );
    const registry = await load(`./${file}`, { prefix: 'echo-' });
    expect(registry.railTypes()).toEqual(['acme']);
    const outcome = await registry.get('acme')?.dispatch({
      ...dispatchRequest({ idempotencyKey: 'k-1' }),
      signal: AbortSignal.timeout(5000),
    });
    expect(outcome).toEqual({ state: 'DISPATCHED', railReference: 'echo-acme:k-1' });
  });

  it('accepts an async factory and a TypeScript file', async () => {
    const file = await writeModule(
      'typed-rail.ts',
      `import type { RailAdapterFactory } from 'symphony-relay';
       const create: RailAdapterFactory = async () => ({
         dispatch: async () => ({ state: 'FAILED', errorCode: 'TYPED' }),
       });
       export default create;`,
    );
    const registry = await load(join(dir, file));
    expect(await registry.get('acme')?.dispatch(dispatchRequest())).toEqual({
      state: 'FAILED',
      errorCode: 'TYPED',
    });
  });

  it('refuses a module that does not exist, naming the rail, the module and where it looked', async () => {
    const message = await loadError('./no-such-rail.mjs', { apiKey: SECRET });
    expect(message).toMatch(
      /^SYMPHONY_RAILS rail "acme": module "\.\/no-such-rail\.mjs" was not found/,
    );
    expect(message).toContain(join(dir, 'no-such-rail.mjs'));
  });

  it('refuses a package name that is not installed', async () => {
    const message = await loadError('acme-rail-not-installed');
    expect(message).toContain('module "acme-rail-not-installed" was not found');
    expect(message).toContain('npm install');
  });

  it('refuses a module that fails while loading', async () => {
    const file = await writeModule('broken.mjs', 'export default function ( {');
    expect(await loadError(`./${file}`)).toMatch(/module "\.\/broken\.mjs" failed to load: /);
  });

  it('refuses a module without a factory as its default export', async () => {
    const file = await writeModule('no-factory.mjs', 'export const dispatch = async () => ({});');
    expect(await loadError(`./${file}`)).toContain('has no factory');
  });

  it('refuses when the factory throws, without echoing the options', async () => {
    const file = await writeModule(
      'throws.mjs',
      `export default function () { throw new Error('options.url is missing'); }`,
    );
    const message = await loadError(`./${file}`, { apiKey: SECRET });
    expect(message).toContain('factory threw: options.url is missing');
  });

  it.each([
    ['nothing', 'undefined'],
    ['an object without dispatch', '{ send: async () => ({}) }'],
    ['a close that is not a function', '{ dispatch: async () => ({}), close: 1 }'],
  ])('refuses a factory that returns %s', async (_label, returned) => {
    const file = await writeModule(
      `returns-${returned.length}.mjs`,
      `export default () => (${returned});`,
    );
    expect(await loadError(`./${file}`)).toContain('returned no rail adapter');
  });

  it('refuses an entry without "module" or with unknown fields, as config', async () => {
    expect(() => parseRailsConfig({ acme: { type: 'module' } })).toThrow(
      'SYMPHONY_RAILS rail "acme": "module" is invalid',
    );
    expect(() =>
      parseRailsConfig({ acme: { type: 'module', module: './x.mjs', url: 'https://x' } }),
    ).toThrow('"url" is invalid: expected no such option');
  });

  it('checks adapters given in code the same way, and refuses a rail_type given twice', async () => {
    const refused = (adapters: Record<string, unknown>, rails = {}) =>
      loadRailRegistry(parseRailsConfig(rails), {
        logger,
        adapters: adapters as never,
      }).then(
        () => 'accepted',
        (error: Error) => error.message,
      );
    expect(await refused({ acme: { send: () => undefined } })).toBe(
      'rail "acme" given in code is invalid: expected a rail_type of 1-64 letters, digits, "_", ".", ":" or "-" and an object with a dispatch(request) function',
    );
    const adapter = { dispatch: async () => ({ state: 'DISPATCHED', railReference: null }) };
    expect(await refused({ sandbox: adapter }, { sandbox: { type: 'sandbox' } })).toContain(
      'SYMPHONY_RAILS rail "sandbox" is also given as an adapter in code',
    );
    expect(await refused({ acme: adapter })).toBe('accepted');
  });

  it('closes the adapters it already built when a later rail fails', async () => {
    const marker = join(dir, 'closed.txt');
    const file = await writeModule(
      'closable.mjs',
      `import { writeFileSync } from 'node:fs';
       export default () => ({ dispatch: async () => ({}), close: async () => writeFileSync(${JSON.stringify(marker)}, 'closed') });`,
    );
    const error = await loadRailRegistry(
      parseRailsConfig({
        first: { type: 'module', module: `./${file}` },
        second: { type: 'module', module: './missing.mjs' },
      }),
      { logger, cwd: dir },
    ).catch((caught: Error) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect(await readFile(marker, 'utf8')).toBe('closed');
  });
});

describe('a rail module in a separate directory, as the README writes it, behind a real relayer process', () => {
  let rail: RailServer;
  let userDir: string;

  beforeAll(async () => {
    rail = await startRailServer();
    userDir = join(dir, 'user-project');
    await mkdir(userDir);
    const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
    const example =
      /<!-- rail-module-example:start[^>]*-->\n```js\n([\s\S]*?)```\n<!-- rail-module-example:end -->/.exec(
        readme,
      )?.[1];
    expect(example, 'the README has the rail module example between its markers').toBeDefined();
    await writeFile(join(userDir, 'my-rail.mjs'), example ?? '');
  });
  afterAll(async () => {
    await rail.close();
  });

  it('delivers every item through the module and records the rail references', async () => {
    const target = await relayerDatabase();
    const rails = JSON.stringify({
      acme: { type: 'module', module: './my-rail.mjs', options: { url: rail.url } },
    });
    rail.setDefault({ status: 201, body: { reference: 'acme-ref' } });
    const relayer = spawnRelayer(
      target.env({ SYMPHONY_RAILS: rails, LOG_LEVEL: 'info' }),
      ['run'],
      {
        cwd: userDir,
      },
    );
    try {
      await waitForLog(relayer, '"event":"worker_started"');
      expect(relayer.output()).toContain('"rails":["acme"]');
      await enqueueItems(target.db.owner, 20, { railType: 'acme', prefix: 'module' });
      await waitForAllTerminal(target.db, 20);
      const { rows } = await target.db.owner.query<{
        state: string;
        rail_reference: string;
        n: number;
      }>(
        `SELECT state::text, rail_reference, count(*)::int AS n FROM payment_outbox_attempts GROUP BY 1, 2`,
      );
      expect(rows).toEqual([{ state: 'DISPATCHED', rail_reference: 'acme-ref', n: 20 }]);
      const keys = rail.requests.map((request) => request.headers['idempotency-key']).sort();
      expect(new Set(keys).size).toBe(20);
      expect(rail.requests[0]?.body).toMatchObject({
        instructionId: expect.stringMatching(/^module-/),
      });
    } finally {
      relayer.child.kill('SIGTERM');
    }
    expect((await relayer.exited).code).toBe(0);
  });

  it('runs as the README shows on one machine: the mock rail and `local --rail acme`', async () => {
    const port = await freePort();
    const mockRail = spawnRelayer(
      {},
      ['mock-rail', '--port', String(port), '--host', '127.0.0.1'],
      {
        cwd: userDir,
      },
    );
    const dataDir = join(dir, 'local-data');
    const rails = JSON.stringify({
      acme: {
        type: 'module',
        module: './my-rail.mjs',
        options: { url: `http://127.0.0.1:${port}/dispatch` },
      },
    });
    const local = spawnRelayer(
      { SYMPHONY_RAILS: rails, SYMPHONY_HTTP_PORT: '0', SYMPHONY_POLL_INTERVAL_MS: '1000' },
      ['local', '--rail', 'acme', '--rate', '20', '--data-dir', dataDir],
      { cwd: userDir },
    );
    try {
      await waitForLog(mockRail, 'mock_rail_listening');
      const dispatched = await waitUntil(
        async () => {
          const counts = [...local.output().matchAll(/progress: dispatched=(\d+)/g)];
          const last = Number(counts.at(-1)?.[1] ?? 0);
          if (local.child.exitCode !== null) throw new Error(`local exited: ${local.output()}`);
          return last > 0 ? last : undefined;
        },
        {
          description: `progress with dispatched payments (${local.output().slice(-1500)})`,
          attempts: 240,
        },
      );
      expect(dispatched).toBeGreaterThan(0);
      expect(local.output()).toContain('demo producer enqueueing 20 payments/s on the acme rail');
      local.child.kill('SIGINT');
      expect((await local.exited).code).toBe(0);
    } finally {
      local.child.kill('SIGKILL');
      mockRail.child.kill('SIGTERM');
      await mockRail.exited;
    }
  }, 150_000);

  it('`local --rail` refuses a rail that is not configured, before starting anything', async () => {
    const local = spawnRelayer({}, ['local', '--rail', 'acme', '--data-dir', join(dir, 'unused')]);
    expect((await local.exited).code).toBe(2);
    expect(local.output().trim()).toBe(
      'symphony-relay: --rail "acme" is not a configured rail: add it to SYMPHONY_RAILS (configured: sandbox)',
    );
  });

  it('refuses to start with one line when the module is missing', async () => {
    const target = await relayerDatabase();
    const rails = JSON.stringify({
      acme: { type: 'module', module: './not-my-rail.mjs', options: { token: SECRET } },
    });
    const relayer = spawnRelayer(target.env({ SYMPHONY_RAILS: rails }), ['run'], { cwd: userDir });
    const exit = await relayer.exited;
    expect(exit.code).not.toBe(0);
    const output = relayer.output().trim();
    expect(output).toMatch(
      /^symphony-relay: SYMPHONY_RAILS rail "acme": module "\.\/not-my-rail\.mjs" was not found/,
    );
    expect(output.split('\n')).toHaveLength(1);
    expect(output).not.toContain(SECRET);
  });
});
