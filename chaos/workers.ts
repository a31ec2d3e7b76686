import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI_BIN } from '../test/support/paths.ts';

/** What a worker's exit looked like. */
export interface WorkerExit {
  id: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The signal the run sent, or null when the process exited on its own. */
  sent: NodeJS.Signals | null;
  at: number;
  /** The process's last lines of output: why a worker that exited on its own did. */
  lastOutput: string[];
}

interface Running {
  id: string;
  child: ChildProcess;
  exited: Promise<WorkerExit>;
  sent: NodeJS.Signals | null;
  started: Promise<void>;
  hasStarted: boolean;
  /** The last lines of output, for a failure message (bounded). */
  tail: string[];
}

/** Relayer settings of a chaos run: short leases and fast repair so a killed worker's items return within seconds. */
export const CHAOS_RELAYER_SETTINGS: Record<string, string> = {
  SYMPHONY_HTTP_PORT: '0',
  SYMPHONY_LEASE_SECONDS: '15',
  SYMPHONY_DISPATCH_TIMEOUT_MS: '8000',
  SYMPHONY_LEASE_MARGIN_MS: '3000',
  SYMPHONY_POLL_INTERVAL_MS: '1000',
  SYMPHONY_REPAIR_INTERVAL_MS: '1000',
  SYMPHONY_QUEUE_STATS_INTERVAL_MS: '5000',
  SYMPHONY_RETRY_BASE_MS: '200',
  SYMPHONY_RETRY_MAX_MS: '2000',
  SYMPHONY_SHUTDOWN_GRACE_MS: '10000',
  LOG_LEVEL: 'info',
};

const START_TIMEOUT_MS = 120_000;
const EXIT_TIMEOUT_MS = 60_000;
const TAIL_LINES = 40;
/** Lines of output kept with an exit: an uncaught error's message and first frames. */
const EXIT_OUTPUT_LINES = 25;

/**
 * `symphony-relay run` processes, one per slot. Each slot always has at most one process;
 * a process that exits without being signalled is recorded and replaced (a bounded number
 * of times), so the fleet keeps its size while faults are injected.
 */
export class Fleet {
  private readonly slots: (Running | undefined)[];
  private generation = 0;
  readonly unprompted: WorkerExit[] = [];
  private replacing = true;

  constructor(
    private readonly env: NodeJS.ProcessEnv,
    size: number,
    private readonly maxReplacements = 100,
  ) {
    this.slots = Array.from({ length: size }, () => undefined);
  }

  /** Starts every slot's first worker and waits until each has logged worker_started. */
  async start(): Promise<void> {
    await Promise.all(this.slots.map((_, slot) => this.launch(slot, `chaos-w${slot + 1}`, true)));
  }

  size(): number {
    return this.slots.length;
  }

  idOf(slot: number): string | undefined {
    return this.slots[slot]?.id;
  }

  /** True once the slot's worker has logged worker_started (its signal handlers are set). */
  hasStarted(slot: number): boolean {
    return this.slots[slot]?.hasStarted ?? false;
  }

  /**
   * Sends `signal` to the slot's worker and waits for it to exit. SIGTERM that is not
   * obeyed within the bound is followed by SIGKILL (and shows as a non-zero exit).
   */
  async signal(slot: number, signal: NodeJS.Signals): Promise<WorkerExit | undefined> {
    const running = this.slots[slot];
    if (!running) return undefined;
    running.sent = signal;
    running.child.kill(signal);
    const exit = await Promise.race([running.exited, sleep(EXIT_TIMEOUT_MS).then(() => undefined)]);
    if (exit) return exit;
    running.child.kill('SIGKILL');
    return running.exited;
  }

  /**
   * Starts a worker in an empty slot, with the slot's first id or a new one. Resolves once
   * it has started (or was stopped by the run while starting).
   */
  async restart(slot: number, newId: boolean): Promise<void> {
    this.generation += 1;
    const id = newId ? `chaos-w${slot + 1}-g${this.generation}` : `chaos-w${slot + 1}`;
    await this.launch(slot, id);
  }

  /**
   * Waits (bounded) until every slot has a worker that has started, starting one with the
   * slot's first id where a slot is empty: the final SIGTERM must meet a whole fleet, not a
   * replacement still loading its code (which has no SIGTERM handler yet).
   */
  async settle(): Promise<void> {
    for (let round = 0; round < 240; round += 1) {
      const waiting = this.slots.map((running, slot) => {
        if (!running) return this.launch(slot, `chaos-w${slot + 1}`).then(() => false);
        return running.hasStarted
          ? Promise.resolve(true)
          : Promise.race([running.started, running.exited]).then(() => false);
      });
      const results = await Promise.race([
        Promise.all(waiting),
        sleep(START_TIMEOUT_MS).then(() => [false]),
      ]);
      if (results.every(Boolean)) return;
      await sleep(250);
    }
    throw new Error('the fleet did not settle: a slot had no started worker for too long');
  }

  /** SIGTERM to every worker at once; their exits in slot order (an empty slot counts as a failure). */
  async stopAll(): Promise<WorkerExit[]> {
    this.replacing = false;
    return Promise.all(
      this.slots.map(
        async (_, slot) =>
          (await this.signal(slot, 'SIGTERM')) ?? {
            id: `(slot ${slot + 1} had no worker)`,
            code: null,
            signal: null,
            sent: 'SIGTERM',
            at: Date.now(),
            lastOutput: [],
          },
      ),
    );
  }

  /** SIGKILL to whatever still runs (cleanup after a failure). */
  async killAll(): Promise<void> {
    this.replacing = false;
    await Promise.all(
      this.slots.map(async (running) => {
        if (!running) return;
        running.sent = 'SIGKILL';
        running.child.kill('SIGKILL');
        await running.exited;
      }),
    );
  }

  tails(): string[] {
    return this.slots.flatMap((running) =>
      running ? [`${running.id}: ${running.tail.join('\n')}`] : [],
    );
  }

  private async launch(slot: number, id: string, first = false): Promise<void> {
    const child = spawn(process.execPath, [CLI_BIN, 'run'], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...this.env, SYMPHONY_WORKER_ID: id },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const tail: string[] = [];
    let resolveStarted: () => void = () => undefined;
    const started = new Promise<void>((resolve) => (resolveStarted = resolve));
    const onOutput = (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      if (text.includes('"event":"worker_started"')) resolveStarted();
      for (const line of text.split('\n')) {
        if (!line.trim()) continue;
        tail.push(line.length > 500 ? `${line.slice(0, 500)}…` : line);
        if (tail.length > TAIL_LINES) tail.shift();
      }
    };
    child.stdout?.on('data', onOutput);
    child.stderr?.on('data', onOutput);
    const running: Running = {
      id,
      child,
      sent: null,
      started,
      hasStarted: false,
      tail,
      exited: new Promise((resolve) =>
        child.once('exit', (code, signal) =>
          resolve({
            id,
            code,
            signal,
            sent: running.sent,
            at: Date.now(),
            lastOutput: tail.slice(-EXIT_OUTPUT_LINES),
          }),
        ),
      ),
    };
    this.slots[slot] = running;
    void started.then(() => (running.hasStarted = true));
    void running.exited.then((exit) => {
      if (this.slots[slot] === running) this.slots[slot] = undefined;
      if (exit.sent !== null) return;
      this.unprompted.push(exit);
      // Keep the fleet's size: a worker that gave up (its database was gone too long, say) is
      // what a supervisor would restart.
      if (this.replacing && this.unprompted.length <= this.maxReplacements) {
        void sleep(1_000).then(() => {
          if (this.replacing && !this.slots[slot])
            void this.launch(slot, id).catch(() => undefined);
        });
      }
    });
    const outcome = await Promise.race([
      started.then(() => 'started' as const),
      running.exited.then(() => 'exited' as const),
      sleep(START_TIMEOUT_MS).then(() => 'timeout' as const),
    ]);
    // After the first start, a worker that exits while starting is not a failed fault: it
    // was killed by the run, or it gave up on its own (its database was restarting, say),
    // which `unprompted` records and the slot's replacement answers.
    if (outcome === 'exited' && !first) return;
    if (outcome !== 'started') {
      throw new Error(
        `relayer ${id} did not start (${outcome}); its last output: ${tail.slice(-5).join(' | ')}`,
      );
    }
  }
}
