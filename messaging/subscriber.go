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
// JetStream pull consumer with explicit acks. It exists because the
// watermill-nats adapter neither makes its consumers durable by default nor
// lets a Nack choose the redelivery delay.
//
// It hands out one message at a time and waits for its Ack or Nack before
// the next, which keeps the stream's order for the handler: the Watermill
// router would otherwise process messages concurrently. Ack acknowledges
// the message to JetStream; Nack asks for redelivery after the backoff for
// its delivery count. Closing (or cancelling the Subscribe context) Naks an
// unfinished message so another instance gets it at once.
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
	c, err := s.js.CreateOrUpdateConsumer(ctx, s.stream, s.config)
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
		it, err := cons.Messages(jetstream.PullMaxMessages(64))
		if err != nil {
			failures++
			s.logger.Warn("messaging: pull failed, retrying", "err", err)
			cons = nil
			_ = sleep(ctx, backoff(failures))
			continue
		}
		failures = 0
		if !s.deliver(ctx, it, out) {
			cons = nil
			_ = sleep(ctx, 100*time.Millisecond)
		}
		it.Stop()
	}
}

// deliver hands out messages from it until ctx is done (true) or it fails
// for good (false: the consumer must be looked up again).
func (s *consumerSubscriber) deliver(ctx context.Context, it jetstream.MessagesContext, out chan<- *message.Message) bool {
	for {
		jm, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return true
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
				errors.Is(err, jetstream.ErrConsumerNotFound) {
				s.logger.Warn("messaging: consumer gone, re-creating", "err", err)
				return false
			}
			// Missing heartbeats while the server is away and the like:
			// the iterator keeps pulling.
			s.logger.Debug("messaging: pull", "err", err)
			continue
		}
		wm, delivered := toWatermill(jm)
		wm.SetContext(ctx)
		select {
		case out <- wm:
		case <-ctx.Done():
			_ = jm.Nak()
			return true
		}
		select {
		case <-wm.Acked():
			if err := jm.Ack(); err != nil {
				// The effect is committed with its inbox row: a
				// redelivery will be skipped.
				s.logger.Warn("messaging: ack failed", "err", err)
			}
		case <-wm.Nacked():
			_ = jm.NakWithDelay(s.delay(delivered))
		case <-ctx.Done():
			// The router is closing; it waits for running handlers, so an
			// Ack or Nack may still come.
			select {
			case <-wm.Acked():
				_ = jm.Ack()
			case <-wm.Nacked():
				_ = jm.Nak()
			}
			return true
		}
	}
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
