import { cp, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { isRoot, locateBinaries, serverUser, userCan } from '../../src/embedded/binaries.ts';
import { startEmbeddedPostgres, temporaryDataDir } from '../../src/embedded/postgres.ts';
import { expectSqlState } from '../support/sqlstate.ts';

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

/** Passwords anyone could guess for the `postgres` superuser of a development database. */
const WELL_KNOWN_PASSWORDS = ['embedded-superuser', 'postgres', 'password'];

function superuserUrlWith(adminUrl: string, password: string): string {
  const url = new URL(adminUrl);
  url.password = encodeURIComponent(password);
  return url.toString();
}

async function tryCopyToProgram(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`COPY (SELECT 1) TO PROGRAM 'true'`);
  } finally {
    await client.end();
  }
}

describe('the superuser password of `local` (embedded PostgreSQL)', () => {
  it('INV-LOCAL-SUPERUSER-RANDOM: is random per data directory, kept owner-only beside it, and no well-known password reaches COPY TO PROGRAM', async () => {
    const dirs = [temporaryDataDir('symphony-pw-a'), temporaryDataDir('symphony-pw-b')];
    const servers = [];
    try {
      for (const dataDir of dirs)
        servers.push(await startEmbeddedPostgres({ dataDir, persistent: false }));
      const passwords = servers.map((server) =>
        decodeURIComponent(new URL(server.adminUrl).password),
      );
      expect(passwords[0]).not.toBe(passwords[1]);
      for (const [index, password] of passwords.entries()) {
        expect(password).toMatch(/^[A-Za-z0-9_-]{24}$/);
        const file = path.join(dirs[index]!, 'symphony-superuser-password');
        expect(await readFile(file, 'utf8')).toBe(password);
        expect((await stat(file)).mode & 0o077).toBe(0);
      }
      const server = servers[0]!;
      // Every way in asks for the password (no trust rule, not even on the Unix socket).
      const hba = new pg.Client({ connectionString: server.adminUrl });
      await hba.connect();
      const rules = await hba.query<{ auth_method: string }>(
        'SELECT DISTINCT auth_method FROM pg_hba_file_rules',
      );
      await hba.end();
      expect(rules.rows).toEqual([{ auth_method: 'scram-sha-256' }]);
      for (const guess of WELL_KNOWN_PASSWORDS) {
        await expectSqlState(tryCopyToProgram(superuserUrlWith(server.adminUrl, guess)), '28P01');
      }
    } finally {
      for (const server of servers) await server.stop();
    }
  });

  it('INV-LOCAL-SUPERUSER-RANDOM: a data directory from before the password file (one fixed password for all) gets a fresh random one at start', async () => {
    const dataDir = temporaryDataDir('symphony-pw-legacy');
    const first = await startEmbeddedPostgres({ dataDir, persistent: true });
    const oldPassword = decodeURIComponent(new URL(first.adminUrl).password);
    await first.stop();
    // What an older version left behind: a cluster and no password file beside it.
    await rm(path.join(dataDir, 'symphony-superuser-password'));
    const again = await startEmbeddedPostgres({ dataDir, persistent: false });
    try {
      const newPassword = decodeURIComponent(new URL(again.adminUrl).password);
      expect(newPassword).toMatch(/^[A-Za-z0-9_-]{24}$/);
      expect(newPassword).not.toBe(oldPassword);
      await expectSqlState(
        tryCopyToProgram(superuserUrlWith(again.adminUrl, oldPassword)),
        '28P01',
      );
      const client = new pg.Client({ connectionString: again.adminUrl });
      await client.connect();
      await client.end();
    } finally {
      await again.stop();
    }
  });
});
