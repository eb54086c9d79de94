package process

import (
	"context"
	"log/slog"
)

type logAttrsKey struct{}

// WithLogAttrs returns ctx carrying attrs for every log line written with
// it through a handler wrapped by ContextLogHandler: the customer, the
// correlation and the causation ids of the event or request being handled.
func WithLogAttrs(ctx context.Context, attrs ...slog.Attr) context.Context {
	prev, _ := ctx.Value(logAttrsKey{}).([]slog.Attr)
	all := make([]slog.Attr, 0, len(prev)+len(attrs))
	return context.WithValue(ctx, logAttrsKey{}, append(append(all, prev...), attrs...))
}

// ContextLogHandler wraps h so that records logged with a context carry
// the attributes WithLogAttrs put there. Log lines never carry customer
// data beyond the id: no email, name or company.
func ContextLogHandler(h slog.Handler) slog.Handler { return ctxHandler{h} }

type ctxHandler struct{ slog.Handler }

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	if attrs, ok := ctx.Value(logAttrsKey{}).([]slog.Attr); ok {
		r.AddAttrs(attrs...)
	}
	return h.Handler.Handle(ctx, r)
}

func (h ctxHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return ctxHandler{h.Handler.WithAttrs(attrs)}
}

func (h ctxHandler) WithGroup(name string) slog.Handler { return ctxHandler{h.Handler.WithGroup(name)} }
