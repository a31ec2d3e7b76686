/**
 * The CLI as an operator runs it: `node bin/symphony-relay.js <command>` in a real child
 * process, so argument parsing, exit codes, stdout/stderr and signal handling are all
 * exercised for real.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { CLI_BIN, REPO_ROOT } from './paths.ts';
import {
  runBinary,
  startBinary,
  waitUntil,
  type BinaryRequirement,
  type RunningProcess,
  type RunResult,
} from './processes.ts';

const NODE: BinaryRequirement = {
  binary: process.execPath,
  installHint: 'the running Node.js executable disappeared',
};

/**
 * The environment a child gets: this process's, minus any DATABASE_URL(_FILE) (a test states the
 * connection it means), plus `overrides`.
 */
export function cliEnvironment(
  overrides: Record<string, string | undefined> = {},
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: undefined,
    DATABASE_URL_FILE: undefined,
    ...overrides,
  };
  for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key];
  return env;
}

/** Runs one CLI command to completion; a non-zero exit is a result, not an error. */
export async function runCli(
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<RunResult> {
  return runBinary(NODE, [CLI_BIN, ...args], { cwd: REPO_ROOT, env: cliEnvironment(env) });
}

/** Starts a long-running CLI command (a server); stop it with `.stop()` (SIGTERM). */
export async function startCli(
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<RunningProcess & { exitCode: Promise<number | null> }> {
  const running = await startBinary(NODE, [CLI_BIN, ...args], {
    cwd: REPO_ROOT,
    env: cliEnvironment(env),
  });
  const exitCode = new Promise<number | null>((resolve) => {
    if (running.child.exitCode !== null) resolve(running.child.exitCode);
    else running.child.once('exit', (code) => resolve(code));
  });
  afterAll(() => running.stop());
  return { ...running, exitCode };
}

/** The first JSON log line of a running process that satisfies `match`, once it appears. */
export async function waitForLogLine(
  running: RunningProcess,
  match: (line: Record<string, unknown>) => boolean,
  description: string,
): Promise<Record<string, unknown>> {
  const found = await waitUntil(
    async () => {
      const line = parseJsonLines(running.output()).find(match);
      if (line) return { line };
      // An exited process will never print it: stop waiting and show what it did print.
      return running.child.exitCode === null ? undefined : { line: undefined };
    },
    { description, attempts: 240 },
  );
  if (!found.line) {
    throw new Error(
      `${description}: the process exited with ${running.child.exitCode} first:\n${running.output()}`,
    );
  }
  return found.line;
}

export function parseJsonLines(text: string): Record<string, unknown>[] {
  const lines: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    try {
      const value: unknown = JSON.parse(line);
      if (typeof value === 'object' && value !== null) lines.push(value as Record<string, unknown>);
    } catch {
      // Not a log line (or one still being written).
    }
  }
  return lines;
}

/** A scratch directory for input files, removed after the test file. */
export async function scratchDirectory(label: string): Promise<{
  path: string;
  write(name: string, content: string): Promise<string>;
}> {
  const path = await mkdtemp(join(tmpdir(), `symphony-${label}-`));
  afterAll(() => rm(path, { recursive: true, force: true }));
  return {
    path,
    async write(name, content) {
      const file = join(path, name);
      await writeFile(file, content);
      return file;
    },
  };
}
