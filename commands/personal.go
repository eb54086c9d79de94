package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
)

// encrypt returns the events as they are stored: their personal fields
// encrypted under the customer's data key, made with the customer's first
// encrypted event. It is the one place where events are encrypted. The
// key is remembered by the key store, so only a signup costs a statement.
// After an erasure no key is made again: the fields are stored as erased.
func (h *Handler) encrypt(ctx context.Context, id uuid.UUID, events []domain.Event) ([]domain.Event, error) {
	if h.keys == nil {
		return events, nil
	}
	var key []byte
	out := make([]domain.Event, len(events))
	for i, e := range events {
		out[i] = e
		if !domain.HasPersonalData(e) {
			continue
		}
		if key == nil {
			var err error
			key, err = h.keys.CreateDataKey(ctx, StreamID(id))
			if errors.Is(err, eventstore.ErrKeyDestroyed) {
				out[i] = domain.ErasePersonal(e)
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("encrypt the personal data of %s: %w", id, err)
			}
		}
		encrypted, err := domain.EncryptPersonal(e, id, key)
		if err != nil {
			return nil, fmt.Errorf("encrypt the personal data of %s: %w", id, err)
		}
		out[i] = encrypted
	}
	return out, nil
}

// emailIndex is the value an email is reserved under: its keyed hash, or,
// without a key store, the normalized email.
func (h *Handler) emailIndex(email string) string {
	if h.keys == nil {
		return domain.NormalizeEmail(email)
	}
	return domain.EmailIndex(h.keys.IndexKey(), email)
}

// Erase erases a customer's personal data (a data subject's request under
// GDPR Art. 17): a customer still onboarding is cancelled first, with
// compensation as any cancel; then personal_data_erased is recorded, the
// email's reservation released in the same append, and the data key
// destroyed, which leaves every encrypted field of the stream unreadable.
// Erasing an erased customer again only makes sure its key is destroyed
// and reports domain.ErrDuplicateCommand. The process managers then ask the
// providers that hold the data to delete it.
func (h *Handler) Erase(ctx context.Context, id uuid.UUID, operator, reason string, meta Meta, opts ...eventstore.AppendOption) (Result, error) {
	if h.keys == nil {
		return Result{}, errors.New("commands: erasure needs a key store")
	}
	c, err := h.Load(ctx, id)
	if err != nil {
		return Result{}, err
	}
	if !c.Erased() {
		releases, err := h.emailReleases(ctx, c)
		if err != nil {
			return Result{}, err
		}
		opts = append(opts, releases...)
	}
	res, err := h.Execute(ctx, id, nil, meta, func(c *domain.Customer) error {
		if !c.Erased() && !c.State().Terminal() && domain.Allowed(c.State(), domain.CmdCancel) {
			if err := c.Cancel(operator, "personal data erased: "+reason); err != nil {
				return err
			}
		}
		return c.ErasePersonalData(operator, reason)
	}, opts...)
	if err != nil && !errors.Is(err, domain.ErrDuplicateCommand) {
		return res, err
	}
	if derr := h.keys.DestroyKey(ctx, StreamID(id)); derr != nil {
		return res, derr
	}
	return res, err
}

// emailReleases gives up the reservation of c's email: under its keyed
// hash, and for a customer signed up before encryption, under the plain email
// it was reserved by then.
func (h *Handler) emailReleases(ctx context.Context, c *domain.Customer) ([]eventstore.AppendOption, error) {
	email := c.Details().Email
	plain := !domain.IsEncrypted(email)
	if !plain {
		key, err := h.keys.DataKey(ctx, StreamID(c.ID()))
		if err != nil {
			return nil, err
		}
		d, err := c.Details().Decrypt(c.ID(), key)
		if err != nil {
			return nil, fmt.Errorf("erase %s: %w", c.ID(), err)
		}
		if email = d.Email; email == domain.Erased {
			return nil, nil
		}
	}
	out := []eventstore.AppendOption{eventstore.WithRelease(eventstore.Reservation{Kind: "email", Value: h.emailIndex(email)})}
	if plain {
		out = append(out, eventstore.WithRelease(eventstore.Reservation{Kind: "email", Value: domain.NormalizeEmail(email)}))
	}
	return out, nil
}
