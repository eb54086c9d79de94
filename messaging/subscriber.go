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
// The Watermill router handles every message it receives concurrently, so
// the subscriber decides what may run at once: messages of different event
// streams, never two of the same stream (see deliver). Ack acknowledges the
// message to JetStream; Nack asks for redelivery after the backoff for its
// delivery count. Closing (or cancelling the Subscribe context) Naks the
// messages not handled yet so another instance gets them at once.
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

// deliver hands out messages from it until ctx is done (true) or it fails
// for good (false: the consumer must be looked up again).
//
// Messages of different event streams (the Onboard-Stream-Id header) are
// handed out concurrently, up to the consumer's MaxAckPending; messages of
// one stream one at a time, in the order they arrived. When a message is
// Nacked its stream is blocked: later messages of that stream are held
// (kept alive with InProgress) until the Nacked one comes back and is
// acknowledged, so a retry never lets a later event of the same stream
// overtake it here. When its redelivery went to another instance of the
// consumer, the hold ends once the consumer's ack floor passes it.
func (s *consumerSubscriber) deliver(ctx context.Context, it jetstream.MessagesContext, out chan<- *message.Message) bool {
	type result struct {
		key   string
		jm    jetstream.Msg
		acked bool
		n     uint64
	}
	type keyState struct {
		busy    bool
		blocked uint64 // stream sequence of the Nacked message, 0 if none
		// retryAt is when the Nacked message is due again; until is when
		// to give up waiting for it (taken by another instance, or gone
		// with a recreated consumer).
		retryAt, until time.Time
		queue          []jetstream.Msg
	}
	incoming := make(chan jetstream.Msg)
	gone := make(chan struct{})
	fetchCtx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	go func() {
		for {
			jm, err := it.Next(jetstream.NextContext(fetchCtx))
			if err != nil {
				if fetchCtx.Err() != nil {
					return
				}
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
					errors.Is(err, jetstream.ErrConsumerNotFound) || s.consumerGone(fetchCtx) {
					s.logger.Warn("messaging: consumer gone, re-creating", "err", err)
					close(gone)
					return
				}
				// Missing heartbeats while the server is away and the
				// like: the iterator keeps pulling.
				s.logger.Debug("messaging: pull", "err", err)
				continue
			}
			select {
			case incoming <- jm:
			case <-fetchCtx.Done():
				return
			}
		}
	}()

	keys := map[string]*keyState{}
	results := make(chan result)
	inflight := 0
	var handOut sync.WaitGroup
	dispatch := func(key string, ks *keyState, jm jetstream.Msg) {
		ks.busy = true
		inflight++
		wm, n := toWatermill(jm)
		wm.SetContext(ctx)
		handOut.Add(1)
		go func() {
			defer handOut.Done()
			select {
			case out <- wm:
			case <-ctx.Done():
				results <- result{key: key, jm: jm, n: n}
				return
			}
			select {
			case <-wm.Acked():
				results <- result{key: key, jm: jm, acked: true, n: n}
			case <-wm.Nacked():
				results <- result{key: key, jm: jm, n: n}
			}
		}()
	}
	next := func(key string, ks *keyState) {
		for !ks.busy && ks.blocked == 0 && len(ks.queue) > 0 {
			jm := ks.queue[0]
			ks.queue = ks.queue[1:]
			dispatch(key, ks, jm)
		}
		if !ks.busy && ks.blocked == 0 && len(ks.queue) == 0 {
			delete(keys, key)
		}
	}
	keepAlive := time.NewTicker(max(s.config.AckWait/3, 10*time.Millisecond))
	defer keepAlive.Stop()
	// The consumer's ack floor tells whether a Nacked message that did not
	// come back here was handled by another instance: then its stream's
	// later messages need not wait for it any longer (until). Asked at
	// most once a second, and only while a stream waits past its retry.
	floorCheck := time.NewTicker(time.Second)
	defer floorCheck.Stop()
	floors := make(chan uint64, 1)
	asking := false
	ok := true
	running := true
	done := ctx.Done()
	for running || inflight > 0 {
		select {
		case jm := <-incoming:
			key := jm.Headers().Get(HeaderStreamID)
			if key == "" {
				key = jm.Subject()
			}
			ks := keys[key]
			if ks == nil {
				ks = &keyState{}
				keys[key] = ks
			}
			if ks.blocked != 0 && streamSeq(jm) == ks.blocked && !ks.busy {
				ks.blocked = 0
				dispatch(key, ks, jm)
				continue
			}
			ks.queue = append(ks.queue, jm)
			next(key, ks)
		case r := <-results:
			inflight--
			ks := keys[r.key]
			ks.busy = false
			switch {
			case r.acked:
				if err := r.jm.Ack(); err != nil {
					// The effect is committed with its inbox row: a
					// redelivery will be skipped.
					s.logger.Warn("messaging: ack failed", "err", err)
				}
			case !running || ctx.Err() != nil:
				_ = r.jm.Nak()
			default:
				d := s.delay(r.n)
				_ = r.jm.NakWithDelay(d)
				ks.blocked = streamSeq(r.jm)
				ks.retryAt = time.Now().Add(d)
				ks.until = ks.retryAt.Add(2 * s.config.AckWait)
			}
			next(r.key, ks)
		case <-keepAlive.C:
			now := time.Now()
			for key, ks := range keys {
				for _, jm := range ks.queue {
					_ = jm.InProgress()
				}
				if ks.blocked != 0 && now.After(ks.until) {
					ks.blocked = 0
					next(key, ks)
				}
			}
		case <-floorCheck.C:
			if asking {
				continue
			}
			now := time.Now()
			for _, ks := range keys {
				if ks.blocked != 0 && now.After(ks.retryAt.Add(time.Second)) {
					asking = true
					go func() { floors <- s.ackFloor(ctx) }()
					break
				}
			}
		case floor := <-floors:
			asking = false
			for key, ks := range keys {
				if ks.blocked != 0 && floor >= ks.blocked {
					ks.blocked = 0
					next(key, ks)
				}
			}
		case <-gone:
			gone = nil
			ok = false
			running = false
			stopFetch()
		case <-done:
			done = nil
			running = false
			stopFetch()
		}
		if !running {
			// Give back what is held so another instance gets it at once.
			for key, ks := range keys {
				for _, jm := range ks.queue {
					_ = jm.Nak()
				}
				ks.queue = nil
				if !ks.busy {
					delete(keys, key)
				}
			}
		}
	}
	handOut.Wait()
	return ok
}

// ackFloor returns the stream sequence at and below which every message of
// the consumer is acknowledged, by whichever instance; 0 when it cannot
// tell.
func (s *consumerSubscriber) ackFloor(ctx context.Context) uint64 {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := s.js.Consumer(ctx, s.stream, s.config.Durable)
	if err != nil {
		return 0
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0
	}
	return info.AckFloor.Stream
}

func streamSeq(jm jetstream.Msg) uint64 {
	md, err := jm.Metadata()
	if err != nil {
		return 0
	}
	return md.Sequence.Stream
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
