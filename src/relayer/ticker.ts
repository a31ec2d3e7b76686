/**
 * A background task on a jittered interval with one start/stop lifecycle. Jitter keeps
 * many workers started together (a deploy) from hitting the database in lock-step.
 * stop() waits for a run in progress, so shutdown never cuts a task in half.
 */
export class Ticker {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = true;

  constructor(
    private readonly intervalMs: number,
    private readonly task: () => Promise<void>,
    private readonly onError: (error: unknown) => void,
    private readonly jitterRatio = 0.2,
  ) {}

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  /** Runs the task now (unless a run is already in progress) and waits for it. */
  async runNow(): Promise<void> {
    if (!this.running) {
      this.running = this.task()
        .catch(this.onError)
        .finally(() => {
          this.running = undefined;
        });
    }
    await this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    const jitter = this.intervalMs * this.jitterRatio * (Math.random() * 2 - 1);
    this.timer = setTimeout(
      () => {
        void this.runNow().finally(() => this.schedule());
      },
      Math.max(1, Math.round(this.intervalMs + jitter)),
    );
    this.timer.unref();
  }
}
