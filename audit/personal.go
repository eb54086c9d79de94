package audit

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
)

// Option configures a replay or a diff.
type Option func(*options)

type options struct {
	keys eventstore.KeyReader
}

// WithKeys decrypts personal data with the customers' data keys: an
// erased customer's fields show as domain.Erased. Without it they show as
// domain.Encrypted, unless the stream records its erasure (see
// domain.DecryptHistory). Verification and export never need it: the hash chain
// covers the encrypted form.
func WithKeys(keys eventstore.KeyReader) Option {
	return func(o *options) { o.keys = keys }
}

func optionsOf(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// history decodes a customer's events, from its first version, with their
// personal fields as domain.DecryptHistory shows them (see WithKeys).
func (o options) history(ctx context.Context, id uuid.UUID, envs []eventstore.Envelope) ([]domain.Event, error) {
	events := make([]domain.Event, len(envs))
	for i, env := range envs {
		ev, err := domain.DecodeEvent(env.Type, env.Data)
		if err != nil {
			return nil, fmt.Errorf("version %d: %w", env.Version, err)
		}
		events[i] = ev
	}
	return domain.DecryptHistory(id, events, eventstore.DataKeyOf(ctx, o.keys, CustomerStreamID(id)))
}
