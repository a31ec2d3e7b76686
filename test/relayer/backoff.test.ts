import { describe, expect, it } from 'vitest';
import { retryDelayMs, type RetryPolicy } from '../../src/relayer/backoff.ts';

const policy: RetryPolicy = { baseMs: 1000, maxMs: 60_000, jitter: 0.2 };
const noJitter = () => 0;
const fullJitter = () => 1;

describe('retryDelayMs', () => {
  it('doubles the delay with every attempt', () => {
    expect(
      [1, 2, 3, 4, 5].map((attempt) => retryDelayMs(attempt, policy, undefined, noJitter)),
    ).toEqual([1000, 2000, 4000, 8000, 16000]);
  });

  it('caps the delay at maxMs, for any attempt number', () => {
    expect(retryDelayMs(7, policy, undefined, noJitter)).toBe(60_000);
    expect(retryDelayMs(50, policy, undefined, noJitter)).toBe(60_000);
    expect(retryDelayMs(1_000_000, policy, undefined, noJitter)).toBe(60_000);
  });

  it('takes at most `jitter` of the delay off, never adds to it', () => {
    expect(retryDelayMs(1, policy, undefined, fullJitter)).toBe(800);
    expect(retryDelayMs(1, policy, undefined, () => 0.5)).toBe(900);
    expect(retryDelayMs(20, policy, undefined, fullJitter)).toBe(48_000);
    for (let i = 0; i < 1000; i++) {
      const delay = retryDelayMs(3, policy);
      expect(delay).toBeGreaterThanOrEqual(3200);
      expect(delay).toBeLessThanOrEqual(4000);
      expect(Number.isInteger(delay)).toBe(true);
    }
  });

  it('is exact without jitter', () => {
    expect(retryDelayMs(3, { ...policy, jitter: 0 }, undefined, fullJitter)).toBe(4000);
  });

  it("lets the rail's hint win over the computed delay", () => {
    expect(retryDelayMs(1, policy, 7000, fullJitter)).toBe(7000);
    expect(retryDelayMs(10, policy, 0, fullJitter)).toBe(0);
  });

  it('caps the hint at maxMs and floors it at 0', () => {
    expect(retryDelayMs(1, policy, 3_600_000)).toBe(60_000);
    expect(retryDelayMs(1, policy, -5000)).toBe(0);
  });

  it('ignores a hint that is not a number', () => {
    expect(retryDelayMs(2, policy, Number.NaN, noJitter)).toBe(2000);
    expect(retryDelayMs(2, policy, Number.POSITIVE_INFINITY, noJitter)).toBe(2000);
  });

  it('treats an attempt number below 1 as the first attempt', () => {
    expect(retryDelayMs(0, policy, undefined, noJitter)).toBe(1000);
    expect(retryDelayMs(-3, policy, undefined, noJitter)).toBe(1000);
    expect(retryDelayMs(Number.NaN, policy, undefined, noJitter)).toBe(1000);
  });
});
