package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onboard/onboard/eventstore"
)

// errStreamMoved means the stream is not at the sequence the relay last
// saw: it was recreated, or something else published to it (a redrive).
var errStreamMoved = errors.New("stream moved since the last publish")

// checkStream compares the stream with the cursor and rewinds s.from when
// the stream lacks events the cursor says were published: JetStream may lose
// what it acknowledged (the fsync interval of a single node), and a stream
// may be deleted and recreated. Postgres may not lose anything, so the
// relay publishes those events again.
//
// In the stream the cursor is about, or the one the relay already publishes
// to again, the cursor of the last event is where it has to resume. A
// stream created since, or one without events, lacks everything: the relay
// publishes from the lowest position a durable consumer may still need
// (floor, relay_floor.go).
func (r *Relay) checkStream(ctx context.Context, s *leadState, log *slog.Logger) error {
	if err := EnsureStreams(ctx, r.js, r.cfg.Stream); err != nil {
		return err
	}
	stream, err := r.js.Stream(ctx, r.cfg.Stream.Name)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	info := stream.CachedInfo()
	created := info.Created.UnixNano()
	var stored eventstore.Cursor
	found := false
	if created == s.storedIncarnation || created == s.incarnation {
		// Only a position that matches the store counts: a forged message
		// at the stream's end must not make the relay publish again.
		reported := r.forgedSeq
		c, ok, err := r.lastTrusted(ctx, stream, func(seq uint64, err error) {
			if seq > reported { // each once, not at every check
				r.forgedSeq = max(r.forgedSeq, seq)
				log.Error("relay: forged message on the stream, ignored", "seq", seq, "err", err)
				r.cfg.Metrics.MessageForged("relay")
			}
		})
		switch {
		case errors.Is(err, errNoTrusted):
			log.Error("relay: no message at the stream's end matches the store; not publishing again", "err", err)
			stored, found = s.from, true
		case err != nil:
			return err
		case ok:
			stored, found = c, true
		}
	}
	if !found {
		if stored, err = r.floor(ctx); err != nil {
			return err
		}
	}
	if stored.Compare(s.from) < 0 {
		log.Warn("relay: stream lacks relayed events, publishing again",
			"from", stored.String(), "was", s.from.String(), "cursor", s.committed.String(),
			"recreated", created != s.storedIncarnation)
		s.from = stored
		r.rewinds.Add(1)
		r.cfg.Metrics.RelayRewound()
	}
	s.lastSeq = info.State.LastSeq
	s.incarnation = created
	s.check = false
	s.checkedAt = time.Now()
	return nil
}

// publish publishes batch and waits for every ack. The first event goes
// alone, on the condition that the stream is still at the last sequence
// seen: a stream deleted and recreated since then refuses it, and the relay
// rewinds before publishing anything out of order into the new stream. The
// rest go asynchronously, in a window of MaxPending.
//
// whileWaiting is called once every message is sent, before the acks are
// awaited.
func (r *Relay) publish(ctx context.Context, batch []eventstore.Envelope, s *leadState, whileWaiting func()) error {
	following := nextOfStream(batch)
	first, err := eventMsg(r.cfg.Stream, batch[0], following[0])
	if err != nil {
		return err
	}
	ack, err := r.publishFirst(ctx, first, s.lastSeq)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			s.check = true
			return fmt.Errorf("publish event %s: %w: %w", batch[0].ID, errStreamMoved, err)
		}
		return fmt.Errorf("publish event %s: %w", batch[0].ID, err)
	}
	if !ack.Duplicate {
		s.lastSeq = ack.Sequence
	}
	rest := batch[1:]
	futures := make([]jetstream.PubAckFuture, 0, len(rest))
	for i, e := range rest {
		m, err := eventMsg(r.cfg.Stream, e, following[i+1])
		if err != nil {
			return err
		}
		f, err := r.js.PublishMsgAsync(m, jetstream.WithExpectStream(r.cfg.Stream.Name))
		if err != nil {
			return fmt.Errorf("publish event %s: %w", e.ID, err)
		}
		futures = append(futures, f)
	}
	whileWaiting()
	timer := time.NewTimer(r.cfg.AckTimeout)
	defer timer.Stop()
	silence := time.NewTimer(min(r.cfg.AckTimeout, ackSilence))
	defer silence.Stop()
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			silence.Reset(min(r.cfg.AckTimeout, ackSilence))
			if ack.Duplicate {
				continue
			}
			if ack.Sequence <= s.lastSeq {
				// A new message got a sequence we have seen: the stream was
				// deleted and recreated, and may have lost what we
				// published before. Finish the batch, then check.
				s.check = true
			}
			s.lastSeq = ack.Sequence
		case err := <-f.Err():
			return fmt.Errorf("publish event %s: %w", rest[i].ID, err)
		case <-timer.C:
			return ErrAckTimeout
		case <-silence.C:
			return ErrAckTimeout
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// ackSilence is how long the relay waits for the next ack of a batch.
// JetStream acknowledges a publisher's messages in order, and promptly: a
// silence this long means the messages went to a server that died (a
// stream leader in a cluster), and the batch is published again instead
// of waiting out AckTimeout.
const ackSilence = 3 * time.Second

// publishFirst publishes m on the condition that the stream's last
// sequence is lastSeq and waits for its ack. It publishes asynchronously so
// that a NATS reconnect fails the wait at once (the library fails pending
// acks then) instead of after AckTimeout: an ack lost with a server that
// went away would otherwise hold every event back for that long.
func (r *Relay) publishFirst(ctx context.Context, m *nats.Msg, lastSeq uint64) (*jetstream.PubAck, error) {
	f, err := r.js.PublishMsgAsync(m, jetstream.WithExpectStream(r.cfg.Stream.Name), jetstream.WithExpectLastSequence(lastSeq))
	if err != nil {
		return nil, err
	}
	timer := time.NewTimer(min(r.cfg.AckTimeout, ackSilence))
	defer timer.Stop()
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-timer.C:
		return nil, ErrAckTimeout
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// nextOfStream returns, for each event of batch, the next event of its
// stream in batch, or nil when there is none: what StreamConfig.Route is
// given to route it.
func nextOfStream(batch []eventstore.Envelope) []*eventstore.Envelope {
	out := make([]*eventstore.Envelope, len(batch))
	later := make(map[string]*eventstore.Envelope, len(batch))
	for i := len(batch) - 1; i >= 0; i-- {
		out[i] = later[batch[i].StreamID]
		later[batch[i].StreamID] = &batch[i]
	}
	return out
}
