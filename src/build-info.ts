import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The package's root: the checkout in development, the installed package otherwise. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../', import.meta.url));

/** package.json's version (symphony_relay_build_info, `evidence`). */
export function packageVersion(): string {
  const manifest = JSON.parse(
    readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
  ) as {
    version?: string;
  };
  return manifest.version ?? 'unknown';
}

/** Where a commit id came from, so a reader knows how far to trust it. */
export interface SourceCommit {
  /** A full or abbreviated hex commit id, or null when it cannot be known. */
  commit: string | null;
  /** `GIT_COMMIT` / `GITHUB_SHA` (set by a build), `git` (this checkout), or `unknown`. */
  source: 'GIT_COMMIT' | 'GITHUB_SHA' | 'git' | 'unknown';
  /** The checkout had uncommitted changes to tracked files (only known for `git`). */
  dirty: boolean;
}

/** The variables a build or CI may set to name the commit an installed copy was built from. */
const COMMIT_VARIABLES = ['GIT_COMMIT', 'GITHUB_SHA'] as const;
const COMMIT_ID = /^[0-9a-f]{7,64}$/;

function git(args: string[], cwd: string): string | null {
  try {
    return execFileSync('git', args, {
      cwd,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 10_000,
    }).trim();
  } catch {
    // No git, or not a checkout (an installed package, a container image).
    return null;
  }
}

/**
 * The commit this code is: a build's variable first (a container image has no .git), else
 * `git rev-parse HEAD` when the package root is a checkout, else unknown. A malformed
 * variable counts as absent rather than being echoed as if it were a commit.
 */
export function sourceCommit(
  env: NodeJS.ProcessEnv = process.env,
  root: string = PACKAGE_ROOT,
): SourceCommit {
  for (const name of COMMIT_VARIABLES) {
    const value = env[name]?.trim().toLowerCase();
    if (value && COMMIT_ID.test(value)) return { commit: value, source: name, dirty: false };
  }
  const inside = git(['rev-parse', '--show-toplevel'], root);
  if (inside === null) return { commit: null, source: 'unknown', dirty: false };
  const commit = git(['rev-parse', 'HEAD'], root);
  if (commit === null || !COMMIT_ID.test(commit)) {
    return { commit: null, source: 'unknown', dirty: false };
  }
  const changes = git(['status', '--porcelain', '--untracked-files=no'], root);
  return { commit, source: 'git', dirty: changes !== null && changes !== '' };
}
