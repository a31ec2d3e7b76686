import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import type { SpanExport, TracingConfig } from './tracing.ts';

/**
 * The OpenTelemetry SDK exporting this relayer's spans over OTLP/HTTP (http/json) in batches.
 * Imported by Tracing.start only when an endpoint is configured (the SDK and the exporter
 * are a few MB of modules a worker without tracing never loads). The provider is this
 * relayer's own, never the process-global one.
 */
export function startSpanExport(
  config: TracingConfig & { tracesUrl: string },
  resource: { workerId: string; version: string },
): SpanExport {
  return new TracerProvider({
    resource: resourceFromAttributes({
      'service.name': config.serviceName,
      'service.version': resource.version,
      'service.instance.id': resource.workerId,
    }),
    spanProcessors: [
      new BatchSpanProcessor({
        exporter: new OTLPTraceExporter({ url: config.tracesUrl, headers: config.headers }),
      }),
    ],
  });
}
