package messaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/onboard/onboard/eventstore"
)

// ErrForged means a message is not an event of the store as it was
// relayed: no event has its id at its stream and version, or the stored
// one differs from it (content, hash, position). Anyone who may publish on
// NATS can make such a message; nothing acts on it.
var ErrForged = errors.New("messaging: message does not match the event store")

// matchStore is the one rule by which a message is trusted: it is trusted
// when the store holds, at the message's stream and version, an event
// equal to the message's envelope in every field (id, content, metadata,
// hashes, global position). It returns nil then, an error wrapping
// ErrForged when it is not, and other errors when the store cannot say.
//
// Checking against the store rather than a signature of the relay's: the
// store is already the source of truth that every consumer reads, so
// there is no key to keep, share or rotate, and a message is refused
// whoever published it, a holder of the relay's credentials included.
func matchStore(ctx context.Context, store eventstore.StreamReader, e eventstore.Envelope) error {
	stored, err := store.ReadStream(ctx, e.StreamID, e.Version)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return fmt.Errorf("%w: event %s: no stream %q", ErrForged, e.ID, e.StreamID)
	}
	if err != nil {
		return fmt.Errorf("check event %s against the store: %w", e.ID, err)
	}
	if len(stored) == 0 || stored[0].Version != e.Version {
		return fmt.Errorf("%w: event %s: stream %q has no version %d", ErrForged, e.ID, e.StreamID, e.Version)
	}
	s := stored[0]
	if s.ID != e.ID {
		return fmt.Errorf("%w: event %s: version %d of %q is event %s", ErrForged, e.ID, e.Version, e.StreamID, s.ID)
	}
	// Both through the wire encoding: the store's JSON and the message's
	// compare as the relay would have encoded them.
	want, err := MarshalEnvelope(s)
	if err != nil {
		return err
	}
	got, err := MarshalEnvelope(e)
	if err != nil {
		return err
	}
	if !bytes.Equal(want, got) {
		return fmt.Errorf("%w: event %s: differs from the stored one (content or position)", ErrForged, e.ID)
	}
	return nil
}

// trustRewindSteps bounds how far back the relay's stream check looks for
// a message that matches the store, past forged ones at the stream's end.
const trustRewindSteps = 64

// lastTrusted returns the cursor of the last message on the stream's
// event subjects that matches the store (matchStore, its headers
// included: the relay resumes from the cursor header), with found false
// when the stream has no event. Messages that do not match are reported
// through forged and skipped, looking back at most trustRewindSteps
// sequences; past that it returns errNoTrusted.
func (r *Relay) lastTrusted(ctx context.Context, stream jetstream.Stream, forged func(seq uint64, err error)) (c eventstore.Cursor, found bool, err error) {
	msg, err := stream.GetLastMsgForSubject(ctx, r.cfg.Stream.AllEventsFilter())
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return eventstore.Cursor{}, false, nil
	}
	if err != nil {
		return eventstore.Cursor{}, false, fmt.Errorf("last stored event: %w", err)
	}
	prefix := r.cfg.Stream.SubjectPrefix + "."
	seq, budget := msg.Sequence, trustRewindSteps
	for {
		c, err := r.trustedCursor(ctx, msg)
		if err == nil {
			return c, true, nil
		}
		if !errors.Is(err, ErrForged) && !errors.Is(err, ErrInvalidMessage) {
			return eventstore.Cursor{}, false, fmt.Errorf("last stored event (seq %d): %w", msg.Sequence, err)
		}
		forged(msg.Sequence, err)
		// The event before it, skipping deleted messages and re-drives.
		for msg = nil; msg == nil; {
			if seq--; seq < 1 || budget <= 0 {
				return eventstore.Cursor{}, false, errNoTrusted
			}
			budget--
			m, err := stream.GetMsg(ctx, seq)
			switch {
			case errors.Is(err, jetstream.ErrMsgNotFound):
			case err != nil:
				return eventstore.Cursor{}, false, fmt.Errorf("stored event (seq %d): %w", seq, err)
			case strings.HasPrefix(m.Subject, prefix):
				msg = m
			}
		}
	}
}

// errNoTrusted means the stream's last messages do not match the store:
// the relay cannot tell from them where the stream stands.
var errNoTrusted = errors.New("no message at the stream's end matches the event store")

// trustedCursor returns the cursor of msg when it is a relayed event that
// matches the store, and its headers agree with its envelope.
func (r *Relay) trustedCursor(ctx context.Context, msg *jetstream.RawStreamMsg) (eventstore.Cursor, error) {
	e, err := UnmarshalEnvelope(msg.Data)
	if err != nil {
		return eventstore.Cursor{}, err
	}
	c, err := cursorOf(msg.Header)
	if err != nil {
		return eventstore.Cursor{}, err
	}
	if c != e.Cursor() || msg.Header.Get(HeaderMsgID) != e.ID.String() {
		return eventstore.Cursor{}, fmt.Errorf("%w: event %s: headers disagree with the envelope", ErrForged, e.ID)
	}
	if err := matchStore(ctx, r.cfg.Store, e); err != nil {
		return eventstore.Cursor{}, err
	}
	return c, nil
}
