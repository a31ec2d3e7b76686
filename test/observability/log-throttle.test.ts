import { describe, expect, it } from 'vitest';
import { LogThrottle } from '../../src/observability/log-throttle.ts';

describe('LogThrottle', () => {
  it('lets the first event through, counts the rest of the interval, and reports them with the next', () => {
    let now = 1_000;
    const throttle = new LogThrottle(30_000, () => now);
    expect(throttle.take()).toBe(0);
    const within = Array.from({ length: 10_000 }, () => throttle.take());
    expect(within.every((taken) => taken === undefined)).toBe(true);
    now += 30_000;
    expect(throttle.take()).toBe(10_000);
    expect(throttle.take()).toBeUndefined();
  });
});
