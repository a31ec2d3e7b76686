import { describe, expect, it } from 'vitest';
import { HTTP_DEFAULTS } from '../../src/rails/http.ts';
import { runCli, startCli, waitForLogLine } from '../support/cli.ts';

async function deliver(url: string, idempotencyKey: string) {
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      [HTTP_DEFAULTS.idempotencyHeader]: idempotencyKey,
    },
    body: JSON.stringify({ outboxId: idempotencyKey, payload: { amount: '1.00' } }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe('symphony-relay mock-rail', () => {
  it('serves POSTs until SIGTERM, then logs its counters and exits 0', async () => {
    const rail = await startCli(['mock-rail', '--port', '0', '--host', '127.0.0.1']);
    const listening = await waitForLogLine(
      rail,
      (line) => line.event === 'mock_rail_listening',
      'the mock rail to listen',
    );
    const url = String(listening.url);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/dispatch$/);

    const first = await deliver(url, 'key-1');
    const redelivered = await deliver(url, 'key-1');
    expect(first).toMatchObject({ status: 200, body: { reference: expect.any(String) } });
    // A real rail de-duplicates by idempotency key: the redelivery gets the same reference.
    expect(redelivered).toMatchObject({
      status: 200,
      body: { reference: first.body.reference, duplicate: true },
    });

    await rail.stop();
    expect(await rail.exitCode).toBe(0);
    const stopped = await waitForLogLine(
      rail,
      (line) => line.event === 'mock_rail_stopped',
      'the mock rail to report its counters',
    );
    expect(stopped.stats).toMatchObject({ requests: 2, accepted: 1, duplicates: 1 });
  });

  it.each([
    [['--failure-rate', '1.5'], '--failure-rate "1.5" is invalid'],
    [['--latency-ms', '200-10'], '--latency-ms "200-10" is invalid'],
    [['--port', 'http'], '--port "http" is invalid'],
    [['--failure-rate', '0.6', '--retryable-rate', '0.6'], 'must not exceed 1'],
  ])('refuses %j with exit code 2 and says what is expected', async (flags, message) => {
    const result = await runCli(['mock-rail', ...flags]);

    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`symphony-relay: mock-rail: `);
    expect(result.stderr).toContain(message);
  });
});
