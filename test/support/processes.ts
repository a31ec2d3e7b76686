import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

export { freePort } from '../../src/embedded/postgres.ts';

export interface WaitOptions {
  /** What is being waited for, used in the failure message. */
  description: string;
  attempts?: number;
  intervalMs?: number;
}

/**
 * Thrown by a probe to stop waiting at once: the condition can no longer come true (the
 * process being waited on exited, say), so retrying until the attempts run out only hides why.
 */
export class WaitAbandoned extends Error {}

/**
 * Retries `probe` until it returns a value other than undefined. Bounded by a number of
 * attempts, so a slow machine retries longer instead of a test asserting on elapsed time.
 * A probe that throws is retried, and on timeout the last error it threw is named in the
 * message and kept as the cause; a probe that throws WaitAbandoned ends the wait at once.
 */
export async function waitUntil<T>(
  probe: () => Promise<T | undefined>,
  options: WaitOptions,
): Promise<T> {
  const attempts = options.attempts ?? 120;
  const intervalMs = options.intervalMs ?? 250;
  let lastError: unknown;
  for (let attempt = 0; attempt < attempts; attempt++) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      if (error instanceof WaitAbandoned) {
        throw new Error(`gave up waiting for ${options.description}: ${error.message}`, {
          cause: error,
        });
      }
      lastError = error;
    }
    await sleep(intervalMs);
  }
  const cause =
    lastError === undefined
      ? ''
      : `; the last error the probe threw: ${lastError instanceof Error ? lastError.message : String(lastError)}`;
  throw new Error(`gave up waiting for ${options.description} after ${attempts} attempts${cause}`, {
    cause: lastError,
  });
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface BinaryRequirement {
  /** Executable name looked up on PATH, e.g. `promtool`. */
  binary: string;
  /** How to get it, e.g. "install the Debian package `prometheus` (apt-get install -y prometheus)". */
  installHint: string;
}

/**
 * Runs a binary to completion and returns its exit code and output; a non-zero exit is a
 * result, not an error. A missing binary is an error that says how to install it, so a
 * machine without the tool fails the suite instead of silently skipping the check.
 */
export async function runBinary(
  requirement: BinaryRequirement,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      requirement.binary,
      args,
      {
        cwd: options.cwd,
        env: options.env ?? process.env,
        timeout: options.timeoutMs ?? 60_000,
        maxBuffer: 16 << 20,
      },
      (error, stdout, stderr) => {
        if (error && (error as NodeJS.ErrnoException).code === 'ENOENT') {
          reject(missingBinary(requirement));
          return;
        }
        if (error && typeof error.code !== 'number') {
          reject(
            new Error(`${requirement.binary} ${args.join(' ')} did not finish: ${error.message}`),
          );
          return;
        }
        resolve({ code: error ? Number(error.code) : 0, stdout, stderr });
      },
    );
    // A binary that exits before reading all of stdin (or never started) must not crash the test run.
    child.stdin?.on('error', () => {});
    child.stdin?.end(options.input ?? '');
  });
}

export interface RunningProcess {
  child: ChildProcess;
  /** Everything written to stdout and stderr so far, for failure messages. */
  output(): string;
  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

/** Starts a long-running binary (a server); fails fast with an install hint when it is missing. */
export async function startBinary(
  requirement: BinaryRequirement,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunningProcess> {
  const child = spawn(requirement.binary, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (error: NodeJS.ErrnoException) =>
      reject(error.code === 'ENOENT' ? missingBinary(requirement) : error),
    );
  });

  return {
    child,
    output: () => output,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killed = await Promise.race([
        exited.then(() => true),
        sleep(graceMs).then(() => false),
      ]);
      if (!killed) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

function missingBinary(requirement: BinaryRequirement): Error {
  return new Error(`\`${requirement.binary}\` was not found on PATH: ${requirement.installHint}`);
}
