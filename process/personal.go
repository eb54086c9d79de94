package process

import (
	"context"

	"github.com/google/uuid"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/providers"
)

// Keys is what the process managers need of the key store.
type Keys interface {
	eventstore.KeyReader
	DestroyKey(ctx context.Context, streamID string) error
}

// The providers that hold an erased customer's personal data, as named on
// ProviderDataDeleted.
const (
	ErasureCRM   = "crm"
	ErasureEmail = "email"
)

// eraseAtProviders is the erasure's step: it makes sure the customer's
// key is destroyed (the command destroys it right after recording the
// erasure, and may have stopped in between), then asks the CRM to delete
// its record and the email provider to suppress its addresses, each once
// (an idempotency key per customer and provider), recording each answer.
// A failed call is an error: the event is delivered again, later.
func (pm *Manager) eraseAtProviders(ctx context.Context, id uuid.UUID, meta commands.Meta) error {
	if pm.cfg.Keys != nil {
		if err := pm.cfg.Keys.DestroyKey(ctx, commands.StreamID(id)); err != nil {
			return err
		}
	}
	c, err := pm.cfg.Commands.Load(ctx, id)
	if err != nil {
		return err
	}
	for _, provider := range []string{ErasureCRM, ErasureEmail} {
		if c.ProviderDataDeleted(provider) {
			continue
		}
		key := id.String() + ":erasure:" + provider
		var existed bool
		if provider == ErasureCRM {
			existed, err = pm.cfg.Providers.CRM.DeleteAccount(ctx, providers.CRMDeleteRequest{ExternalID: id.String(), IdempotencyKey: key})
		} else {
			existed, err = pm.cfg.Providers.Mailer.Suppress(ctx, providers.SuppressRequest{CustomerID: id.String(), IdempotencyKey: key})
		}
		if err != nil {
			pm.cfg.Logger.WarnContext(ctx, "erasure at a provider failed; the event is delivered again", "provider", provider, "err", err)
			return err
		}
		if err := pm.exec(ctx, id, meta, func(c *domain.Customer) error { return c.RecordProviderDataDeleted(provider, existed) }); err != nil {
			return err
		}
	}
	return nil
}

// details returns c's signup details decrypted for a provider call.
func (pm *Manager) details(ctx context.Context, c *domain.Customer) (domain.SignupDetails, error) {
	d := c.Details()
	if !domain.IsEncrypted(d.Email) {
		return d, nil // remembered from this process's own signup, or stored before encryption
	}
	key, err := pm.key(ctx, c.ID())
	if err != nil {
		return d, err
	}
	return d.Decrypt(c.ID(), key)
}

// key returns the customer's data key, nil when there is none or no key
// store: encrypted fields then read as erased.
func (pm *Manager) key(ctx context.Context, id uuid.UUID) ([]byte, error) {
	if pm.cfg.Keys == nil {
		return nil, nil
	}
	return pm.cfg.Keys.DataKey(ctx, commands.StreamID(id))
}
