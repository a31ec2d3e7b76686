import { describe, expect, it } from 'vitest';
import { sourceCommit } from '../src/build-info.ts';
import { scratchDirectory } from './support/cli.ts';
import { REPO_ROOT } from './support/paths.ts';

describe('the commit of this code (evidence, test run stamp)', () => {
  it('comes from GIT_COMMIT first, then GITHUB_SHA; a malformed value counts as absent', () => {
    const commit = 'ABCDEF1234567890abcdef1234567890abcdef12';
    expect(sourceCommit({ GIT_COMMIT: commit, GITHUB_SHA: 'f'.repeat(40) }, REPO_ROOT)).toEqual({
      commit: commit.toLowerCase(),
      source: 'GIT_COMMIT',
      dirty: false,
    });
    expect(sourceCommit({ GITHUB_SHA: 'f'.repeat(40) }, REPO_ROOT)).toMatchObject({
      commit: 'f'.repeat(40),
      source: 'GITHUB_SHA',
    });
    expect(sourceCommit({ GIT_COMMIT: 'main; rm -rf /' }, REPO_ROOT).source).not.toBe('GIT_COMMIT');
  });

  it('is unknown outside a git checkout without a variable', async () => {
    const outside = await scratchDirectory('not-a-checkout');
    expect(sourceCommit({}, outside.path)).toEqual({
      commit: null,
      source: 'unknown',
      dirty: false,
    });
  });
});
