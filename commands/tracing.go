package commands

import (
	"context"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
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

// CustomerTrace returns the trace context of the customer's last event: the
// remembered one when this process remembers the customer (which saves a
// read), else the stream's; nil when there is none. A caller that knows
// nothing of the customer's trace (a provider's webhook) continues it.
func (h *Handler) CustomerTrace(ctx context.Context, id uuid.UUID) map[string]string {
	if tr, ok := h.LastTrace(id); ok {
		return tr
	}
	envs, err := h.store.ReadStream(ctx, StreamID(id), 1)
	if err != nil || len(envs) == 0 {
		return nil
	}
	return envs[len(envs)-1].Metadata.Trace
}
