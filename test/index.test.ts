import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueItems } from './support/outbox-fixtures.ts';
import { REPO_ROOT } from './support/paths.ts';
import { runBinary, startBinary, waitUntil, type BinaryRequirement } from './support/processes.ts';
import { relayerDatabase, waitForAllTerminal } from './support/relayer.ts';

const run = promisify(execFile);
const TSC = join(REPO_ROOT, 'node_modules/typescript/bin/tsc');
const NODE: BinaryRequirement = { binary: process.execPath, installHint: 'Node.js itself' };

/**
 * The package as a user gets it: compiled with `npm run build`'s config, installed into a
 * project of its own (a node_modules link), imported by name from plain JavaScript (no tsx)
 * and type-checked against the emitted .d.ts.
 */
describe("the package's public API, from a separate project", () => {
  let project: string;

  beforeAll(async () => {
    await run(process.execPath, [TSC, '-p', join(REPO_ROOT, 'tsconfig.build.json')], {
      cwd: REPO_ROOT,
    });
    project = await mkdtemp(join(tmpdir(), 'symphony-user-project-'));
    await mkdir(join(project, 'node_modules'));
    await symlink(REPO_ROOT, join(project, 'node_modules/symphony-relay'), 'dir');
    await writeFile(join(project, 'package.json'), '{ "type": "module", "private": true }\n');
  }, 180_000);
  afterAll(async () => {
    if (project) await rm(project, { recursive: true, force: true });
  });

  it('type-checks a TypeScript adapter against the compiled declarations, and catches a wrong outcome', async () => {
    await writeFile(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          target: 'es2022',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ['node'],
          typeRoots: [join(REPO_ROOT, 'node_modules/@types')],
        },
        files: ['rail.ts'],
      }),
    );
    const typecheck = () =>
      run(process.execPath, [TSC, '-p', join(project, 'tsconfig.json')], { cwd: project }).then(
        () => '',
        (error: { stdout: string }) => error.stdout,
      );

    await writeFile(
      join(project, 'rail.ts'),
      `import { startRelayer, ConfigError, type RailAdapter, type RailAdapterFactory } from 'symphony-relay';
       const factory: RailAdapterFactory = (options, context) => {
         const rail: RailAdapter = {
           kind: 'typed',
           errorCodes: ['DECLINED'],
           async dispatch(request) {
             request.signal.throwIfAborted();
             if (request.attempt > 3) return { state: 'FAILED', errorCode: 'DECLINED' };
             return { state: 'DISPATCHED', railReference: String(options.prefix) + context.railType + request.idempotencyKey };
           },
         };
         return rail;
       };
       export default factory;
       export const start = () => startRelayer({ rails: { typed: factory({}, { railType: 'typed', logger: undefined as never }) as RailAdapter } });
       export const isConfigError = (error: unknown) => error instanceof ConfigError;
      `,
    );
    expect(await typecheck()).toBe('');

    await writeFile(
      join(project, 'rail.ts'),
      `import type { RailAdapter } from 'symphony-relay';
       export const rail: RailAdapter = { dispatch: async () => ({ state: 'SENT', railReference: null }) };`,
    );
    expect(await typecheck()).toMatch(/rail\.ts.*error TS2322/);
  });

  it('starts a relayer from plain JavaScript with an adapter built in code, delivers and stops', async () => {
    const target = await relayerDatabase();
    await writeFile(
      join(project, 'main.mjs'),
      `import { startRelayer } from 'symphony-relay';
       const delivered = new Set();
       const inHouse = {
         kind: 'in-house',
         async dispatch(request) {
           delivered.add(request.idempotencyKey);
           return { state: 'DISPATCHED', railReference: 'in-house-' + request.idempotencyKey };
         },
       };
       const relayer = await startRelayer({ env: process.env, rails: { 'in-house': inHouse } });
       console.log(JSON.stringify({ started: relayer.railTypes, ready: relayer.readiness().ready }));
       process.once('SIGTERM', async () => {
         const report = await relayer.stop();
         console.log(JSON.stringify({ stopped: report, delivered: delivered.size }));
       });
      `,
    );
    const child = await startBinary(NODE, [join(project, 'main.mjs')], {
      cwd: project,
      env: { PATH: process.env.PATH, ...target.env() },
    });
    const exited = new Promise<number | null>((resolve) => child.child.once('exit', resolve));
    try {
      await waitUntil(async () => (child.output().includes('"started"') ? true : undefined), {
        description: `the user's relayer to start (output: ${child.output()})`,
      });
      expect(child.output()).toContain('{"started":["in-house"],"ready":true}');
      await enqueueItems(target.db.owner, 10, { railType: 'in-house', prefix: 'api' });
      await waitForAllTerminal(target.db, 10);
    } finally {
      child.child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(child.output()).toContain('"delivered":10');
    const { rows } = await target.db.owner.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM payment_outbox_attempts
        WHERE state = 'DISPATCHED' AND rail_reference LIKE 'in-house-api-key-%'`,
    );
    expect(rows[0]?.n).toBe(10);
  });

  it('rejects a bad setting with ConfigError and leaves nothing running', async () => {
    await writeFile(
      join(project, 'bad.mjs'),
      `import { startRelayer, ConfigError } from 'symphony-relay';
       try {
         await startRelayer({ env: { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/x', SYMPHONY_CONCURRENCY: 'many' } });
       } catch (error) {
         console.log(JSON.stringify({ configError: error instanceof ConfigError, message: error.message }));
       }
      `,
    );
    const result = await runBinary(NODE, [join(project, 'bad.mjs')], { cwd: project });
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      configError: true,
      message: expect.stringContaining('SYMPHONY_CONCURRENCY="many" is invalid'),
    });
  });
});
