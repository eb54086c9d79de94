package audit

import (
	"context"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
)

// Option configures a replay or a diff.
type Option func(*options)

type options struct {
	keys eventstore.KeyReader
}

// WithKeys opens sealed personal data with the customers' data keys: an
// erased customer's fields show as domain.Erased. Without it they show as
// domain.Sealed. Verification and export never need it: the hash chain
// covers the sealed form.
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

// openPersonal returns ev with its sealed fields opened, erased or masked
// (see WithKeys). looked and key carry the customer's key between the
// events of one stream.
func (o options) openPersonal(ctx context.Context, id uuid.UUID, ev domain.Event, key *[]byte, looked *bool) (domain.Event, error) {
	if !domain.HasPersonalData(ev) {
		return ev, nil
	}
	if o.keys == nil {
		return domain.MaskSealed(ev), nil
	}
	if !*looked {
		k, err := o.keys.DataKey(ctx, CustomerStreamID(id))
		if err != nil {
			return nil, err
		}
		*key, *looked = k, true
	}
	return domain.OpenPersonal(ev, id, *key)
}
