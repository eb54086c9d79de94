package handlers

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// traceContext is the W3C Trace Context format (traceparent, tracestate)
// that event metadata carries, so that one trace follows a customer from
// the signup request through every process manager and provider call.
var traceContext = propagation.TraceContext{}

// ContextWithTrace returns ctx carrying the span context stored in an
// event's (or timer's) trace metadata, if any.
func ContextWithTrace(ctx context.Context, carrier map[string]string) context.Context {
	if len(carrier) == 0 {
		return ctx
	}
	return traceContext.Extract(ctx, propagation.MapCarrier(carrier))
}

// TraceOf returns the trace metadata of ctx's span, to store with events;
// nil when ctx has no valid span.
func TraceOf(ctx context.Context) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	carrier := propagation.MapCarrier{}
	traceContext.Inject(ctx, carrier)
	return carrier
}

func noopTracer() trace.Tracer { return noop.NewTracerProvider().Tracer("onboard") }
