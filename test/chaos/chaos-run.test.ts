import { describe, expect, it } from 'vitest';
import { FULL_CONFIG } from '../../chaos/options.ts';
import { runChaos } from '../../chaos/runner.ts';

/**
 * The short configuration of `npm run chaos`: every fault once or more, on real relayer
 * processes and a PostgreSQL 18 of its own (the restart fault cannot touch the suite's shared
 * server). Asserts the report's invariants and that the faults happened, never timings.
 */
describe('chaos run (short configuration)', () => {
  it('loses nothing, records one terminal attempt per item and explains every duplicate acceptance, under SIGKILLs, backend terminations, a PostgreSQL restart, a hanging rail, 5xx and a final SIGTERM', async () => {
    const report = await runChaos({
      ...FULL_CONFIG,
      items: 200,
      rate: 20,
      producers: 3,
      workers: 2,
      durationSeconds: 12,
      drainTimeoutSeconds: 180,
      seed: 7,
    });
    const context = JSON.stringify(report, null, 2);
    expect(report.checks, context).toEqual(
      Object.fromEntries(Object.keys(report.checks).map((name) => [name, true])),
    );
    expect(report.ok).toBe(true);
    const figures = report.figures as Record<string, unknown>;
    const faults = report.faults as Record<string, unknown>;
    expect(figures.enqueued as number, context).toBeGreaterThan(200);
    expect(figures.lost, context).toBe(0);
    expect(figures.twoOrMoreTerminal, context).toBe(0);
    expect(figures.dispatched, context).toBe(figures.enqueued);
    expect(figures.pendingAfterDrain, context).toBe(0);
    expect(figures.leasesAfterDrain, context).toBe(0);
    expect(figures.finalSigtermExitCodes, context).toEqual([0, 0]);
    expect(faults.sigkills as number, context).toBeGreaterThanOrEqual(1);
    expect(faults.restartsSameId as number, context).toBeGreaterThanOrEqual(1);
    // A round counts once it cut a backend (a round that met none is retried 0.5 s later).
    expect(faults.terminationRounds as number, context).toBeGreaterThanOrEqual(1);
    expect(faults.backendsTerminated as number, context).toBeGreaterThanOrEqual(1);
    expect(faults.pgRestart, context).toHaveProperty('recoveryMs');
    expect(faults.railHang, context).toEqual({ ms: 4_000 });
    expect((figures.rail as { serverErrors: number }).serverErrors, context).toBeGreaterThan(0);
  }, 600_000);
});
