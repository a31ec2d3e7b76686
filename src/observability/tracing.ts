import {
  defaultTextMapGetter,
  defaultTextMapSetter,
  INVALID_SPAN_CONTEXT,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type Tracer,
  type TracerProvider,
  ProxyTracerProvider,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { ClaimedItem } from '../db/outbox.ts';
import type { DispatchOutcome } from '../rails/rail.ts';

/** Where spans go: nowhere (the default), or an OTLP/HTTP (http/json) endpoint. */
export interface TracingConfig {
  /** The full URL spans are POSTed to (…/v1/traces), or undefined when tracing is off. */
  tracesUrl: string | undefined;
  /** OTEL_EXPORTER_OTLP_HEADERS, e.g. an API key for a hosted collector; never logged. */
  headers: Record<string, string>;
  serviceName: string;
}

export const TRACING_OFF: TracingConfig = {
  tracesUrl: undefined,
  headers: {},
  serviceName: 'symphony-relay',
};

/** Span attribute names; `symphony.*` for what OpenTelemetry's conventions do not name. */
export const SPAN_ATTRIBUTES = {
  outboxId: 'symphony.outbox_id',
  instructionId: 'symphony.instruction_id',
  participantId: 'symphony.participant_id',
  rail: 'symphony.rail',
  attempt: 'symphony.attempt',
  outcome: 'symphony.outcome',
  recordedState: 'symphony.recorded_state',
  errorCode: 'symphony.error_code',
  leaseLost: 'symphony.lease_lost',
  workerId: 'symphony.worker_id',
  claimRequested: 'symphony.claim.requested',
  claimClaimed: 'symphony.claim.claimed',
  httpStatus: 'http.response.status_code',
} as const;

const propagator = new W3CTraceContextPropagator();
/**
 * The span of a claim or a completion when tracing is off: a no-op shared by all, so the
 * hot path builds no attributes nor contexts for spans nobody records.
 */
const NOT_RECORDED: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/** Where spans go when tracing is on: a provider whose shutdown flushes what is buffered. */
export interface SpanExport extends TracerProvider {
  shutdown(): Promise<void>;
}

/**
 * The relayer's spans: one per claim, one per dispatch attempt (the rail is told its
 * context in `traceparent`, so the rail's own spans join the trace), one per completion
 * (a child of its dispatch). When tracing is off every span is a no-op and no traceparent is
 * sent. The provider is this relayer's own, never the process-global one, so an application
 * embedding the relayer keeps its own OpenTelemetry setup.
 */
export class Tracing {
  private constructor(
    private readonly tracer: Tracer,
    private readonly provider?: SpanExport,
  ) {}

  /**
   * Tracing as configured: off (every span a no-op) when no OTLP endpoint is set. The
   * OpenTelemetry SDK and its OTLP exporter are loaded only when one is: a worker that does
   * not export spans does not carry them in memory.
   */
  static async start(
    config: TracingConfig,
    resource: { workerId: string; version: string },
  ): Promise<Tracing> {
    if (config.tracesUrl === undefined) return NO_TRACING;
    const { startSpanExport } = await import('./span-export.ts');
    const provider = startSpanExport({ ...config, tracesUrl: config.tracesUrl }, resource);
    return new Tracing(provider.getTracer('symphony-relay', resource.version), provider);
  }

  /** Tracing off: for parts built without a tracing setup (tests, tools). */
  static off(): Tracing {
    return new Tracing(noopTracer());
  }

  get enabled(): boolean {
    return this.provider !== undefined;
  }

  startClaim(workerId: string, requested: number): Span {
    if (!this.enabled) return NOT_RECORDED;
    return this.tracer.startSpan('outbox.claim', {
      kind: SpanKind.INTERNAL,
      attributes: {
        [SPAN_ATTRIBUTES.workerId]: workerId,
        [SPAN_ATTRIBUTES.claimRequested]: requested,
      },
    });
  }

  endClaim(span: Span, claimed: number, error?: unknown): void {
    span.setAttribute(SPAN_ATTRIBUTES.claimClaimed, claimed);
    if (error !== undefined)
      span.setStatus({ code: SpanStatusCode.ERROR, message: errorText(error) });
    span.end();
  }

  /**
   * One dispatch attempt. Its parent is the producer's trace when the item carries one
   * (see producerContext); it links to the claim that leased the item.
   */
  startDispatch(item: ClaimedItem, claim: Span | undefined): Span {
    // Off, nothing is recorded and the rail gets the producer's traceparent as stored (see
    // traceparentOf): no span or context is built per item.
    if (!this.enabled) return NOT_RECORDED;
    const links: Link[] = claim ? [{ context: claim.spanContext() }] : [];
    return this.tracer.startSpan(
      'outbox.dispatch',
      { kind: SpanKind.CLIENT, attributes: itemAttributes(item), links },
      producerContext(item),
    );
  }

  endDispatch(span: Span, outcome: DispatchOutcome): void {
    if (!this.enabled) return;
    span.setAttribute(SPAN_ATTRIBUTES.outcome, outcome.state);
    if (outcome.railCode && /^\d{3}$/.test(outcome.railCode)) {
      span.setAttribute(SPAN_ATTRIBUTES.httpStatus, Number(outcome.railCode));
    }
    if (outcome.state !== 'DISPATCHED') {
      span.setAttribute(SPAN_ATTRIBUTES.errorCode, outcome.errorCode);
      span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.errorCode });
    }
    span.end();
  }

  /** The W3C `traceparent` of a span, or undefined when tracing is off. */
  traceparentOf(span: Span): string | undefined {
    if (!this.enabled) return undefined;
    const carrier: Record<string, string> = {};
    propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, defaultTextMapSetter);
    return carrier.traceparent;
  }

  startCompletion(item: ClaimedItem, outcome: DispatchOutcome, dispatch: Span | undefined): Span {
    if (!this.enabled) return NOT_RECORDED;
    const parent = dispatch ? trace.setSpan(ROOT_CONTEXT, dispatch) : ROOT_CONTEXT;
    return this.tracer.startSpan(
      'outbox.complete',
      {
        kind: SpanKind.INTERNAL,
        attributes: { ...itemAttributes(item), [SPAN_ATTRIBUTES.outcome]: outcome.state },
      },
      parent,
    );
  }

  /** Flushes buffered spans; called once when the relayer stops. */
  async shutdown(): Promise<void> {
    await this.provider?.shutdown();
  }
}

/**
 * The producer's trace context for an item: the W3C `traceparent` stored with it at enqueue
 * (validated there, P7407), so every dispatch of the item joins the producer's trace as a
 * child of the producer's span. Without one, each attempt starts a trace of its own.
 */
function producerContext(item: ClaimedItem): Context {
  if (!item.traceparent) return ROOT_CONTEXT;
  return propagator.extract(ROOT_CONTEXT, { traceparent: item.traceparent }, defaultTextMapGetter);
}

function itemAttributes(item: ClaimedItem): Attributes {
  return {
    [SPAN_ATTRIBUTES.outboxId]: item.outboxId,
    [SPAN_ATTRIBUTES.instructionId]: item.instructionId,
    [SPAN_ATTRIBUTES.participantId]: item.participantId,
    [SPAN_ATTRIBUTES.rail]: item.railType,
    [SPAN_ATTRIBUTES.attempt]: item.attemptCount + 1,
  };
}

/**
 * A tracer whose spans are cheap no-ops with an invalid context (so no traceparent is sent),
 * even when the embedding application registered a global provider of its own.
 */
function noopTracer(): Tracer {
  return new ProxyTracerProvider().getTracer('symphony-relay-off');
}

function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).slice(0, 300);
}

/** For parts built without a tracing setup (tests, tools): every span a no-op. */
export const NO_TRACING = Tracing.off();
