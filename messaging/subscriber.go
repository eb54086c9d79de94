package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"
)

// Metadata keys the subscriber adds to each Watermill message, besides the
// NATS headers (which it copies under their own names).
const (
	// MetadataNumDelivered is the delivery count from JetStream, starting at 1.
	MetadataNumDelivered = "nats_num_delivered"
	// MetadataStreamSeq is the message's sequence in the stream.
	MetadataStreamSeq = "nats_stream_seq"
	// MetadataSubject is the subject the message was published on.
	MetadataSubject = "nats_subject"
)

// consumerSubscriber is a Watermill message.Subscriber on one durable
// JetStream pull consumer with explicit acks: Ack acknowledges the message
// to JetStream, Nack asks for its redelivery after the backoff for its
// delivery count (NakWithDelay), and the consumer's AckWait, MaxDeliver and
// MaxAckPending are the router's. Every message is handed to the Watermill
// router as it arrives, which handles it concurrently with the others:
// up to MaxAckPending at once, in no particular order.
//
// It is not watermill-nats's jetstream.Subscriber (v2.1.3), which a
// ResourceInitializer could make durable and a NakDelay give the backoff,
// because that one
//   - handles one message at a time per subscription: it waits for the
//     Ack or Nack inside the nats.go Consume callback, which nats.go calls
//     sequentially, so a process manager calling a provider would hold
//     every other customer's event of its step behind that call;
//   - stops delivering for good when its consumer is deleted (a stream
//     deleted and recreated, a wiped NATS store): Consume stops, and the
//     subscriber neither notices nor creates the consumer again;
//   - drains the *nats.Conn it is given when it closes, which the relay
//     and the dead letters share in one process.
//
// Closing (or cancelling the Subscribe context) Naks a message not handed
// out yet, and a Nack while stopping asks for redelivery at once, so that
// another instance gets it without waiting for AckWait.
type consumerSubscriber struct {
	js      jetstream.JetStream
	stream  string
	config  jetstream.ConsumerConfig
	backoff []time.Duration
	logger  *slog.Logger

	closeOnce sync.Once
	closing   chan struct{}
	wg        sync.WaitGroup
}

var _ message.Subscriber = (*consumerSubscriber)(nil)

func newConsumerSubscriber(js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig, backoff []time.Duration, logger *slog.Logger) *consumerSubscriber {
	return &consumerSubscriber{
		js: js, stream: stream, config: cfg, backoff: backoff,
		logger:  logger.With("consumer", cfg.Durable),
		closing: make(chan struct{}),
	}
}

// ensure creates the durable consumer or updates it to the configuration.
func (s *consumerSubscriber) ensure(ctx context.Context) (jetstream.Consumer, error) {
	var c jetstream.Consumer
	err := whileAway(ctx, func(ctx context.Context) (err error) {
		c, err = s.js.CreateOrUpdateConsumer(ctx, s.stream, s.config)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s on %s: %w", s.config.Durable, s.stream, err)
	}
	return c, nil
}

// Subscribe starts delivering the consumer's messages; topic is ignored
// (the consumer's filter subjects decide what it gets).
func (s *consumerSubscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	select {
	case <-s.closing:
		return nil, errors.New("subscriber closed")
	default:
	}
	cons, err := s.ensure(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	ctx, cancel := context.WithCancel(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer cancel()
		go func() {
			select {
			case <-s.closing:
				cancel()
			case <-ctx.Done():
			}
		}()
		s.run(ctx, cons, out)
	}()
	return out, nil
}

// run delivers messages until ctx is done, re-creating the consumer when it
// disappears (a deleted and recreated stream takes its consumers with it).
func (s *consumerSubscriber) run(ctx context.Context, cons jetstream.Consumer, out chan<- *message.Message) {
	failures := 0
	for ctx.Err() == nil {
		if cons == nil {
			c, err := s.ensure(ctx)
			if err != nil {
				failures++
				s.logger.Warn("messaging: consumer unavailable, retrying", "err", err)
				_ = sleep(ctx, backoff(failures))
				continue
			}
			cons = c
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(64),
			jetstream.PullExpiry(pullExpiry), jetstream.PullHeartbeat(pullHeartbeat))
		if err != nil {
			failures++
			s.logger.Warn("messaging: pull failed, retrying", "err", err)
			cons = nil
			_ = sleep(ctx, backoff(failures))
			continue
		}
		failures = 0
		if !s.deliver(ctx, it, out) {
			failures++
			cons = nil
			_ = sleep(ctx, backoff(failures))
		}
		it.Stop()
	}
}

// A pull asks for heartbeats every pullHeartbeat while it waits: two
// missed ones make deliver ask whether the consumer is gone. The library's
// default (half the 30s expiry) let a consumer lost with NATS's data go
// unnoticed for 30s; a pull to a consumer that no longer exists gets no
// answer, not an error.
const (
	pullHeartbeat = time.Second
	pullExpiry    = 10 * time.Second
)

// consumerGone asks the server whether the durable consumer still exists.
// A pull error does not always say so: when the stream is deleted and
// recreated, the iterator may only report missing heartbeats while the
// consumer it pulls from is gone for good.
func (s *consumerSubscriber) consumerGone(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := s.js.Consumer(ctx, s.stream, s.config.Durable)
	return errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
}

// deliver hands out messages from it until ctx is done (true) or the
// consumer is gone (false: it must be looked up again).
func (s *consumerSubscriber) deliver(ctx context.Context, it jetstream.MessagesContext, out chan<- *message.Message) bool {
	for {
		jm, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return true
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
				errors.Is(err, jetstream.ErrConsumerNotFound) || s.consumerGone(ctx) {
				s.logger.Warn("messaging: consumer gone, re-creating", "err", err)
				return false
			}
			// Missing heartbeats while the server is away and the like:
			// the iterator keeps pulling.
			s.logger.Debug("messaging: pull", "err", err)
			continue
		}
		wm, n := toWatermill(jm)
		wm.SetContext(ctx)
		select {
		case out <- wm:
		case <-ctx.Done():
			_ = jm.Nak()
			return true
		}
		s.wg.Add(1)
		go s.settle(ctx, jm, wm, n)
	}
}

// settle acknowledges jm to JetStream once the router acknowledged wm, or
// asks for its n-th redelivery after the backoff once the router Nacked it.
// Until then it tells JetStream every AckWait/3 that jm is in progress, so
// that a short AckWait redelivers lost deliveries soon without cutting
// long handlers short.
func (s *consumerSubscriber) settle(ctx context.Context, jm jetstream.Msg, wm *message.Message, n uint64) {
	defer s.wg.Done()
	progress := time.NewTicker(max(s.config.AckWait/3, time.Millisecond))
	defer progress.Stop()
	for {
		select {
		case <-progress.C:
			_ = jm.InProgress()
			continue
		case <-wm.Acked():
			s.ack(jm)
		case <-wm.Nacked():
			s.nak(ctx, jm, n)
		}
		return
	}
}

func (s *consumerSubscriber) ack(jm jetstream.Msg) {
	if err := jm.Ack(); err != nil {
		// The effect is committed with its inbox row: a redelivery
		// will be skipped.
		s.logger.Warn("messaging: ack failed", "err", err)
	}
}

func (s *consumerSubscriber) nak(ctx context.Context, jm jetstream.Msg, n uint64) {
	if ctx.Err() != nil {
		_ = jm.Nak() // stopping: another instance may take it at once
		return
	}
	_ = jm.NakWithDelay(s.delay(n))
}

// delay is the redelivery delay after the n-th delivery failed.
func (s *consumerSubscriber) delay(n uint64) time.Duration {
	if len(s.backoff) == 0 {
		return 0
	}
	i := int(min(n, uint64(len(s.backoff)))) - 1
	return s.backoff[max(i, 0)]
}

// Close stops every subscription and waits for them.
func (s *consumerSubscriber) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	s.wg.Wait()
	return nil
}

func toWatermill(jm jetstream.Msg) (*message.Message, uint64) {
	h := jm.Headers()
	id := h.Get(HeaderMsgID)
	wm := message.NewMessage(id, jm.Data())
	for k, v := range h {
		if len(v) > 0 {
			wm.Metadata.Set(k, v[0])
		}
	}
	wm.Metadata.Set(MetadataSubject, jm.Subject())
	var delivered uint64 = 1
	if md, err := jm.Metadata(); err == nil {
		delivered = md.NumDelivered
		wm.Metadata.Set(MetadataStreamSeq, strconv.FormatUint(md.Sequence.Stream, 10))
	}
	wm.Metadata.Set(MetadataNumDelivered, strconv.FormatUint(delivered, 10))
	return wm, delivered
}
