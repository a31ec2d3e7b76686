import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { enqueueItems } from '../support/outbox-fixtures.ts';
import {
  startOtlpReceiver,
  type OtlpReceiver,
  type ReceivedSpan,
} from '../support/otlp-receiver.ts';
import { startRailServer, type RailServer } from '../support/rail-server.ts';
import {
  httpRails,
  relayerDatabase,
  spawnRelayer,
  startRelayer,
  waitForAllTerminal,
  waitForLog,
} from '../support/relayer.ts';

let receiver: OtlpReceiver;
let rail: RailServer;
beforeAll(async () => {
  receiver = await startOtlpReceiver();
  rail = await startRailServer();
});
afterAll(async () => {
  await receiver.close();
  await rail.close();
});

const byName = (spans: ReceivedSpan[], name: string) => spans.filter((span) => span.name === name);

describe('OpenTelemetry traces over OTLP/HTTP (http/json), from a real relayer process', () => {
  let spans: ReceivedSpan[];
  let railRequests: RailServer['requests'];
  const workerId = 'traced-worker-1';

  beforeAll(async () => {
    const target = await relayerDatabase();
    rail.requests.length = 0;
    // The first delivery is refused with 503, so one item has two attempts.
    rail.respondNext({ status: 503 });
    const relayer = spawnRelayer(
      target.env({
        SYMPHONY_RAILS: httpRails(rail.url),
        SYMPHONY_WORKER_ID: workerId,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
        LOG_LEVEL: 'info',
      }),
    );
    await waitForLog(relayer, '"event":"worker_started"');
    expect(relayer.output()).toContain('"event":"tracing_enabled"');
    await enqueueItems(target.db.owner, 3, { railType: 'bank', prefix: 'traced' });
    await waitForAllTerminal(target.db, 3);
    relayer.child.kill('SIGTERM');
    // A graceful stop flushes the span buffer: everything is exported before exit.
    expect((await relayer.exited).code).toBe(0);
    spans = [...receiver.spans];
    railRequests = [...rail.requests];
  });

  it('exports to <endpoint>/v1/traces as JSON, with the service and worker as the resource', () => {
    expect(receiver.requests.length).toBeGreaterThan(0);
    expect(receiver.requests.every((request) => request.path === '/v1/traces')).toBe(true);
    expect(spans[0]?.resource).toMatchObject({
      'service.name': 'symphony-relay',
      'service.instance.id': workerId,
    });
  });

  it('has a dispatch span per attempt with outbox id, rail, attempt and outcome', () => {
    const dispatches = byName(spans, 'outbox.dispatch');
    expect(dispatches).toHaveLength(4);
    const retried = dispatches.find((span) => span.attributes['symphony.outcome'] === 'RETRYABLE');
    expect(retried?.attributes).toMatchObject({
      'symphony.rail': 'bank',
      'symphony.attempt': 1,
      'symphony.error_code': 'HTTP_503',
      'http.response.status_code': 503,
    });
    const outboxId = retried?.attributes['symphony.outbox_id'];
    expect(outboxId).toMatch(/^[0-9a-f-]{36}$/);
    const second = dispatches.find(
      (span) =>
        span.attributes['symphony.outbox_id'] === outboxId &&
        span.attributes['symphony.attempt'] === 2,
    );
    expect(second?.attributes).toMatchObject({
      'symphony.outcome': 'DISPATCHED',
      'http.response.status_code': 200,
    });
    expect(
      dispatches.filter((span) => span.attributes['symphony.outcome'] === 'DISPATCHED'),
    ).toHaveLength(3);
  });

  it('sends each attempt its own span as the W3C traceparent to the rail', () => {
    const dispatches = byName(spans, 'outbox.dispatch');
    expect(railRequests).toHaveLength(4);
    for (const request of railRequests) {
      const body = request.body as { outboxId: string; attempt: number };
      const span = dispatches.find(
        (candidate) =>
          candidate.attributes['symphony.outbox_id'] === body.outboxId &&
          candidate.attributes['symphony.attempt'] === body.attempt,
      );
      expect(span, `a dispatch span for ${body.outboxId} attempt ${body.attempt}`).toBeDefined();
      expect(request.headers.traceparent).toBe(`00-${span?.traceId}-${span?.spanId}-01`);
    }
  });

  it('records each completion as a child of its dispatch, with the recorded state', () => {
    const dispatches = byName(spans, 'outbox.dispatch');
    const completions = byName(spans, 'outbox.complete');
    expect(completions).toHaveLength(4);
    for (const completion of completions) {
      const parent = dispatches.find((span) => span.spanId === completion.parentSpanId);
      expect(parent?.traceId).toBe(completion.traceId);
      expect(completion.attributes['symphony.outbox_id']).toBe(
        parent?.attributes['symphony.outbox_id'],
      );
      expect(completion.attributes['symphony.recorded_state']).toBe(
        parent?.attributes['symphony.outcome'],
      );
    }
  });

  it('has claim spans, and every dispatch links to the claim that leased its item', () => {
    const claims = byName(spans, 'outbox.claim');
    expect(claims.length).toBeGreaterThan(0);
    expect(claims.every((span) => span.attributes['symphony.worker_id'] === workerId)).toBe(true);
    const claimed = claims.reduce(
      (sum, span) => sum + Number(span.attributes['symphony.claim.claimed']),
      0,
    );
    expect(claimed).toBe(4);
    const claimIds = new Set(claims.map((span) => span.spanId));
    for (const dispatch of byName(spans, 'outbox.dispatch')) {
      expect(dispatch.links.some((link) => claimIds.has(link.spanId))).toBe(true);
    }
  });

  it('carries no payload and no idempotency key in any span', () => {
    const text = JSON.stringify(spans);
    expect(text).not.toContain('key-1');
    expect(text).not.toMatch(/"n":\s*1/);
  });
});

describe("the producer's trace, given at enqueue", () => {
  const PRODUCER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
  const PRODUCER_SPAN = '00f067aa0ba902b7';
  const traceparent = `00-${PRODUCER_TRACE}-${PRODUCER_SPAN}-01`;

  async function enqueueTraced(target: Awaited<ReturnType<typeof relayerDatabase>>, key: string) {
    const { rows } = await target.db.owner.query<{ outbox_id: string }>(
      `SELECT outbox_id FROM public.enqueue_payment_outbox($1, 'pp-traced', $2, 'bank', '{}', $3)`,
      [`instr-${key}`, key, traceparent],
    );
    return rows[0]!.outbox_id;
  }

  it('INV-TRACE-CONTINUED: every dispatch of the item is a child of the producer span, in its trace', async () => {
    const target = await relayerDatabase();
    rail.requests.length = 0;
    const relayer = await startRelayer(
      target.env({
        SYMPHONY_RAILS: httpRails(rail.url),
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      }),
    );
    try {
      const outboxId = await enqueueTraced(target, 'traced-by-producer');
      await waitForAllTerminal(target.db, 1);
      await relayer.stop(); // flushes the spans
      const dispatch = byName(receiver.spans, 'outbox.dispatch').find((span) =>
        JSON.stringify(span.attributes).includes(outboxId),
      );
      expect(dispatch?.traceId).toBe(PRODUCER_TRACE);
      expect(dispatch?.parentSpanId).toBe(PRODUCER_SPAN);
      expect(rail.requests[0]?.headers.traceparent).toBe(
        `00-${PRODUCER_TRACE}-${dispatch?.spanId}-01`,
      );
    } finally {
      await relayer.stop();
    }
  });

  it("INV-TRACE-CONTINUED: with tracing off, the rail still receives the producer's traceparent", async () => {
    const target = await relayerDatabase();
    rail.requests.length = 0;
    const relayer = await startRelayer(target.env({ SYMPHONY_RAILS: httpRails(rail.url) }));
    try {
      await enqueueTraced(target, 'traced-untraced-relayer');
      await waitForAllTerminal(target.db, 1);
    } finally {
      await relayer.stop();
    }
    expect(rail.requests.map((request) => request.headers.traceparent)).toEqual([traceparent]);
  });
});

describe('tracing is off unless configured', () => {
  it.each([
    ['no endpoint is set', {}],
    [
      'OTEL_SDK_DISABLED=true, even with an endpoint',
      { OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'ENDPOINT' },
    ],
    [
      'OTEL_TRACES_EXPORTER=none, even with an endpoint',
      { OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'ENDPOINT/v1/traces' },
    ],
  ])('when %s: nothing is exported and the rail gets no traceparent', async (_label, settings) => {
    const target = await relayerDatabase();
    const exportsBefore = receiver.requests.length;
    rail.requests.length = 0;
    const env = Object.fromEntries(
      Object.entries(settings as Record<string, string>).map(([name, value]) => [
        name,
        value.replace('ENDPOINT', receiver.endpoint),
      ]),
    );
    const relayer = await startRelayer(target.env({ SYMPHONY_RAILS: httpRails(rail.url), ...env }));
    try {
      await enqueueItems(target.db.owner, 2, { railType: 'bank', prefix: 'untraced' });
      await waitForAllTerminal(target.db, 2);
    } finally {
      await relayer.stop();
    }
    expect(rail.requests).toHaveLength(2);
    expect(rail.requests.every((request) => request.headers.traceparent === undefined)).toBe(true);
    expect(receiver.requests.length).toBe(exportsBefore);
  });
});

describe('tracing settings', () => {
  const base = { DATABASE_URL: 'postgres://relay@127.0.0.1/db' };

  it('sends traces to <OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces, or to the traces endpoint as given', () => {
    expect(
      loadConfig({ ...base, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).tracing
        .tracesUrl,
    ).toBe('http://collector:4318/v1/traces');
    expect(
      loadConfig({
        ...base,
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://traces.example/otlp',
      }).tracing.tracesUrl,
    ).toBe('https://traces.example/otlp');
    expect(loadConfig(base).tracing.tracesUrl).toBeUndefined();
  });

  it('reads export headers, and never echoes them when they are malformed', () => {
    expect(
      loadConfig({ ...base, OTEL_EXPORTER_OTLP_HEADERS: 'api-key=s%3Dcret,x-team=payments' })
        .tracing.headers,
    ).toEqual({ 'api-key': 's=cret', 'x-team': 'payments' });
    expect(() => loadConfig({ ...base, OTEL_EXPORTER_OTLP_HEADERS: 'api-key' })).toThrow(
      /^OTEL_EXPORTER_OTLP_HEADERS \(value not shown/,
    );
  });

  it('refuses a protocol other than http/json with one line saying what is supported', () => {
    expect(() => loadConfig({ ...base, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toThrow(
      'OTEL_EXPORTER_OTLP_PROTOCOL="grpc" is invalid: expected one of http/json',
    );
  });
});
