/**
 * At most one log line per interval for a recurring event: the first occurrence is logged at
 * once, later ones within the interval are only counted, and the next line says how many were
 * left out. Keeps a flood (of errors an outsider can cause) from flooding the log.
 */
export class LogThrottle {
  private lastAt: number | undefined;
  private suppressed = 0;

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** undefined: leave this one out; a number: log it, saying that many were left out before it. */
  take(): number | undefined {
    const now = this.now();
    if (this.lastAt !== undefined && now - this.lastAt < this.intervalMs) {
      this.suppressed += 1;
      return undefined;
    }
    this.lastAt = now;
    const suppressed = this.suppressed;
    this.suppressed = 0;
    return suppressed;
  }
}
