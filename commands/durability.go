package commands

import "context"

type deferKey struct{}

type fromStoreKey struct{}

// DeferAppends returns ctx under which the commands append with
// eventstore.Deferred: their appends return once committed, before they
// are durable. It is for a caller that makes them durable before acting
// on them outside the store, as the messaging router does for a
// process manager's delivery (its inbox row's commit waits for the flush
// before the message is acknowledged): the process managers then need
// not wait for a flush of their own at every step.
func DeferAppends(ctx context.Context) context.Context {
	return context.WithValue(ctx, deferKey{}, true)
}

func deferred(ctx context.Context) bool {
	d, _ := ctx.Value(deferKey{}).(bool)
	return d
}

// ReadFromStore returns ctx under which the commands decide on the
// customer's stream as stored, never on the history they remember. It is
// for the redelivery of a message whose earlier delivery may have
// appended Deferred events that a crash of the database took back: the
// remembered history would still hold them, and a reaction deciding on it
// would find its work done and do nothing.
func ReadFromStore(ctx context.Context) context.Context {
	return context.WithValue(ctx, fromStoreKey{}, true)
}

func fromStore(ctx context.Context) bool {
	f, _ := ctx.Value(fromStoreKey{}).(bool)
	return f
}
