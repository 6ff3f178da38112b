import {
  INVALID_SPAN_CONTEXT,
  ProxyTracerProvider,
  SpanStatusCode,
  trace,
  type Attributes,
  type Span,
} from '@opentelemetry/api'
import { GatehouseError } from '../errors.ts'

/**
 * OpenTelemetry spans (docs/operations.md, "Tracing"). Only the API package is used: until the host
 * process registers an SDK (a preload module), every tracer is a no-op and a span costs one call.
 * A ProxyTracer: an SDK registered after this module loaded is still picked up.
 */
const tracer = trace.getTracer('gatehouse')

/** What the global provider delegates to while no SDK is registered. */
const NO_SDK = new ProxyTracerProvider().getDelegate()
/** Stands in for a span when nothing records: its methods do nothing. */
const NOT_RECORDING = trace.wrapSpanContext(INVALID_SPAN_CONTEXT)

/** Checked per call: an SDK may be registered after this module loaded. */
function sdkRegistered(): boolean {
  const provider = trace.getTracerProvider()
  return !(provider instanceof ProxyTracerProvider) || provider.getDelegate() !== NO_SDK
}

/**
 * Runs `fn` inside span `name`. Attribute values come from config and fixed unions only — never a
 * URL with its query, a header, a cookie or a token. A failure marks the span as an error with
 * gatehouse's error code (`gatehouse.error`), never the message, which may quote the IdP.
 */
export function span<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>): Promise<T> {
  // Without an SDK every span is a no-op, but making one still allocates a context per request.
  if (!sdkRegistered()) return fn(NOT_RECORDING)
  return tracer.startActiveSpan(name, { attributes }, async (current) => {
    try {
      return await fn(current)
    } catch (err) {
      const code = err instanceof GatehouseError ? err.code : 'internal'
      current.setAttribute('gatehouse.error', code)
      current.setStatus({ code: SpanStatusCode.ERROR, message: code })
      throw err
    } finally {
      current.end()
    }
  })
}
