import { readFileSync } from 'node:fs';
import { mkdir, readFile, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { scratchDirectory } from '../support/cli.ts';
import { freshDatabase } from '../support/database.ts';
import { REPO_ROOT } from '../support/paths.ts';
import { freePort, startBinary, waitUntil, type BinaryRequirement } from '../support/processes.ts';
import { README, shellBlocks } from '../support/readme-blocks.ts';
import { withCredentials } from '../support/urls.ts';

const SH: BinaryRequirement = { binary: 'sh', installHint: 'a POSIX shell (Debian: dash)' };

/** The children of a process (Linux), to stop the command a shell is waiting for. */
function childrenOf(pid: number): number[] {
  const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  return text === '' ? [] : text.split(/\s+/).map(Number);
}

describe('README shell blocks run as written', () => {
  it('marks every sh block as run or skip (with a reason)', () => {
    const blocks = shellBlocks(README);
    expect(blocks.length).toBeGreaterThan(0);
    for (const block of blocks) {
      expect(block.marker, `README.md line ${block.line}: add a readme-test marker`).toMatch(
        /^(run|skip \(.+\))$/,
      );
    }
    expect(blocks.filter((block) => block.marker === 'run').length).toBeGreaterThan(0);
  });

  // The production bootstrap: the variables its prose names, `symphony-relay` on PATH as an
  // installed package puts it, DATABASE_URL at a fresh, empty database; `run` is stopped with
  // SIGTERM once ready and must exit 0 (and with it the block).
  it('the production bootstrap migrates a fresh database, creates every login, seeds a policy file and runs until stopped', async () => {
    const bootstrap = shellBlocks(README).find(
      (block) => block.marker === 'run' && block.script.includes('symphony-relay migrate'),
    );
    expect(bootstrap, 'the production bootstrap block is marked readme-test: run').toBeDefined();
    const db = await freshDatabase({ empty: true });
    const scratch = await scratchDirectory('readme-commands');
    const binDir = join(scratch.path, 'bin');
    await mkdir(binDir);
    await symlink(join(REPO_ROOT, 'bin/symphony-relay.js'), join(binDir, 'symphony-relay'));
    const policy = JSON.parse(await readFile(join(REPO_ROOT, 'policy/development.json'), 'utf8'));
    const policyFile = await scratch.write(
      'policy.json',
      JSON.stringify({ ...policy, version: 'readme-production-1', environment: 'production' }),
    );
    const passwords = {
      RELAY_PASSWORD: 'readme-relay-secret-1',
      INGEST_PASSWORD: 'readme-ingest-secret-2',
      READONLY_PASSWORD: 'readme-readonly-secret-3',
    };
    const port = await freePort();
    // Only what the block's prose names (and PATH, HOME): a SYMPHONY_* variable of the
    // developer's shell would change what `run` does.
    const env = {
      PATH: `${binDir}:${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
      HOME: process.env.HOME,
      DATABASE_URL: db.ownerUrl,
      ...passwords,
      RELAY_DATABASE_URL: withCredentials(db.ownerUrl, 'relay_login', passwords.RELAY_PASSWORD),
      POLICY_FILE: policyFile,
      SYMPHONY_HTTP_HOST: '127.0.0.1',
      SYMPHONY_HTTP_PORT: String(port),
    };

    // Logins are cluster-wide: drop the ones the block made, pass or fail.
    onTestFinished(async () => {
      const made = await db.owner.query<{ rolname: string }>(
        "SELECT rolname FROM pg_roles WHERE rolname IN ('relay_login', 'ingest_login', 'readonly_login')",
      );
      for (const { rolname } of made.rows) {
        await db.owner.query(`DROP OWNED BY ${rolname}`);
        await db.owner.query(`DROP ROLE ${rolname}`);
      }
    });
    const shell = await startBinary(SH, ['-ec', bootstrap?.script ?? ''], { cwd: REPO_ROOT, env });
    const shellExit = new Promise<number | null>((resolve) => shell.child.once('exit', resolve));
    try {
      const ready = await waitUntil(
        async () => {
          // A block that exited will never get ready: stop waiting and show its output.
          if (shell.child.exitCode !== null) return 'exited';
          const response = await fetch(`http://127.0.0.1:${port}/readyz`);
          return response.ok ? 'ready' : undefined;
        },
        { description: "run's /readyz", attempts: 240 },
      ).catch((error: Error) => `${error.message}`);
      expect(ready, `the block did not get ready:\n${shell.output()}`).toBe('ready');
      const [relayer] = childrenOf(shell.child.pid ?? 0);
      expect(relayer).toBeDefined();
      process.kill(relayer ?? 0, 'SIGTERM');
      expect(await shellExit, shell.output()).toBe(0);
    } finally {
      await shell.stop();
    }

    const output = shell.output();
    expect(output).not.toMatch(/Unhandled 'error' event|\n\s+at /);
    for (const password of Object.values(passwords)) expect(output).not.toContain(password);
    expect(output).toContain(
      'created login role relay_login; it can act only as symphony_executor',
    );
    expect(output).toContain('created login role ingest_login; it can act only as symphony_ingest');
    expect(output).toContain(
      'created login role readonly_login; it can act only as symphony_readonly',
    );
    const active = await db.owner.query<{ version: string }>(
      "SELECT version FROM policy_versions WHERE status = 'ACTIVE'",
    );
    expect(active.rows).toEqual([{ version: 'readme-production-1' }]);
  }, 180_000);
});
