import { describe, expect, it } from 'vitest';
import { WaitAbandoned, waitUntil } from './processes.ts';

describe('waitUntil', () => {
  it("names the probe's last error when it gives up, and keeps it as the cause", async () => {
    const crash = new Error('connect ECONNREFUSED 127.0.0.1:9090');
    const waited = waitUntil(
      async () => {
        throw crash;
      },
      { description: 'prometheus to answer', attempts: 3, intervalMs: 1 },
    );
    await expect(waited).rejects.toThrow(
      'gave up waiting for prometheus to answer after 3 attempts; the last error the probe threw: connect ECONNREFUSED 127.0.0.1:9090',
    );
    await expect(waited).rejects.toMatchObject({ cause: crash });
  });

  it('stops at once when the probe throws WaitAbandoned', async () => {
    let calls = 0;
    const waited = waitUntil(
      async () => {
        calls += 1;
        throw new WaitAbandoned('prometheus exited (1)');
      },
      { description: 'prometheus to answer', attempts: 1000, intervalMs: 1 },
    );
    await expect(waited).rejects.toThrow(
      'gave up waiting for prometheus to answer: prometheus exited (1)',
    );
    expect(calls).toBe(1);
  });
});
