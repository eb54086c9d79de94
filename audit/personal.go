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

// WithKeys decrypts personal data with the customers' data keys: an
// erased customer's fields show as domain.Erased. Without it they show as
// domain.Encrypted. Verification and export never need it: the hash chain
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

// decryptPersonal returns ev with its encrypted fields decrypted, erased or masked
// (see WithKeys). looked and key carry the customer's key between the
// events of one stream.
func (o options) decryptPersonal(ctx context.Context, id uuid.UUID, ev domain.Event, key *[]byte, looked *bool) (domain.Event, error) {
	if !domain.HasPersonalData(ev) {
		return ev, nil
	}
	if o.keys == nil {
		return domain.MaskEncrypted(ev), nil
	}
	if !*looked {
		k, err := o.keys.DataKey(ctx, CustomerStreamID(id))
		if err != nil {
			return nil, err
		}
		*key, *looked = k, true
	}
	return domain.DecryptPersonal(ev, id, *key)
}
