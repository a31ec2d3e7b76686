import { cp, mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { isRoot, locateBinaries, serverUser, userCan } from '../../src/embedded/binaries.ts';
import { startEmbeddedPostgres, temporaryDataDir } from '../../src/embedded/postgres.ts';

describe('embedded PostgreSQL from a checkout only its owner can enter', () => {
  it('starts and answers when its binaries sit in a mktemp -d (0700) directory', async () => {
    const installed = await locateBinaries();
    // Like a checkout in root's home or in `mktemp -d`: nobody but the owner may enter.
    const privateDir = await mkdtemp(path.join(os.tmpdir(), 'symphony-private-'));
    expect((await stat(privateDir)).mode & 0o777).toBe(0o700);
    const copy = path.join(privateDir, 'checkout', 'native');
    await cp(installed.root, copy, { recursive: true, verbatimSymlinks: true });
    if (isRoot()) {
      // The premise: the postgres OS user, which PostgreSQL must run as, cannot execute it.
      expect(userCan(serverUser(), '-x', path.join(copy, 'bin', 'postgres'))).toBe(false);
    }
    const dataDir = temporaryDataDir('symphony-private-pg');
    const server = await startEmbeddedPostgres({ dataDir, persistent: false, binariesRoot: copy });
    try {
      const client = new pg.Client({ connectionString: server.adminUrl });
      await client.connect();
      const { rows } = await client.query<{ v: string }>(
        `SELECT current_setting('server_version_num') AS v`,
      );
      await client.end();
      expect(Number(rows[0]?.v)).toBeGreaterThanOrEqual(180000);
      // As root the server ran from a copy the postgres user can reach; otherwise in place.
      if (isRoot()) expect(server.binariesDir.startsWith(privateDir)).toBe(false);
      else expect(server.binariesDir).toBe(copy);
    } finally {
      await server.stop();
      if (isRoot()) await rm(server.binariesDir, { recursive: true, force: true });
      await rm(privateDir, { recursive: true, force: true });
    }
  });
});
