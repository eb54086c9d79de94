package messaging

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onboard/onboard/eventstore"
)

// Defaults of the seals' stream.
const (
	DefaultSealStreamName = "ONBOARDING_SEALS"
	DefaultSealSubject    = "onboarding.seals"
)

// SealConfig makes the active relay seal the log (see eventstore.Seal):
// it folds every event it publishes into the log's digest, in global
// order, and writes a signed seal every Interval while events flow and
// when it stops cleanly, to the store's seals table and to a JetStream
// stream of its own. It also compares the two to find a store restored
// from a backup, or a NATS that lost seals (restore detection).
type SealConfig struct {
	// Store keeps the seals and the store's identity. Required.
	Store eventstore.SealStore
	// Key signs the seals. Required.
	Key ed25519.PrivateKey
	// Interval is the most time between an event and the seal that covers
	// it while the relay runs. Default 2s.
	Interval time.Duration
	// MaxStreams seals early once this many streams moved since the last
	// seal, which bounds a seal's size. Default 2000.
	MaxStreams int
	// StreamName and Subject are the seals' JetStream stream and subject;
	// defaults ONBOARDING_SEALS and "onboarding.seals".
	StreamName, Subject string
	// Metrics defaults to NopSealMetrics.
	Metrics SealMetrics
}

// SealMetrics receives the sealing counters; methods must be safe for
// concurrent use.
type SealMetrics interface {
	// SealWritten is called after a seal covering events events was stored.
	SealWritten(events int64)
	// RestoreDetected is called when the relay found the store behind the
	// seals on NATS ("store_behind"), NATS behind the store ("nats_behind")
	// or the store on another cluster than recorded ("store_moved"): an
	// alert.
	RestoreDetected(direction string)
}

// NopSealMetrics discards everything.
type NopSealMetrics struct{}

// SealWritten does nothing.
func (NopSealMetrics) SealWritten(int64) {}

// RestoreDetected does nothing.
func (NopSealMetrics) RestoreDetected(string) {}

func (c *SealConfig) setDefaults() {
	if c.Interval <= 0 {
		c.Interval = 2 * time.Second
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = 2000
	}
	if c.StreamName == "" {
		c.StreamName = DefaultSealStreamName
	}
	if c.Subject == "" {
		c.Subject = DefaultSealSubject
	}
	if c.Metrics == nil {
		c.Metrics = NopSealMetrics{}
	}
}

// sealer is the sealing state of one lead: the digest up to cursor and
// the stream heads moved since the last seal.
type sealer struct {
	cfg    SealConfig
	id     eventstore.StoreIdentity
	last   eventstore.Seal // the last stored seal (Seq 0: none)
	cursor eventstore.Cursor
	events int64
	digest eventstore.Digest
	heads  map[string]eventstore.Head
	// since is when the first event not sealed yet was folded.
	since time.Time
	// writing delivers the outcome of the seal being written, nil when
	// none is.
	writing chan sealWrite
}

// startSealer loads the last seal and continues from it: the events after
// its cursor are folded in again as the relay (or catchUp) reads them.
func (r *Relay) startSealer(ctx context.Context, log *slog.Logger) (*sealer, error) {
	cfg := *r.cfg.Seal
	id, err := cfg.Store.Identity(ctx)
	if err != nil {
		return nil, err
	}
	last, _, err := cfg.Store.LastSeal(ctx)
	if err != nil {
		return nil, err
	}
	cur, err := last.At()
	if err != nil {
		return nil, fmt.Errorf("last seal %d: %w", last.Seq, err)
	}
	if id.Moved() {
		msg := fmt.Sprintf("the store moved to another cluster: it was recorded on system %s, it is served by %s: "+
			"restored from a dump?", id.SystemID, id.ClusterID)
		log.Error("relay: "+msg, "alert", "store_moved")
		if id, err = cfg.Store.NewEpoch(ctx, msg); err != nil {
			return nil, err
		}
		r.setAlert("store_moved", msg)
		cfg.Metrics.RestoreDetected("store_moved")
	}
	log.Debug("relay: sealing from the last seal", "seal", last.Seq, "cursor", cur.String(), "epoch", id.Epoch)
	return &sealer{cfg: cfg, id: id, last: last, cursor: cur, events: last.Events, digest: last.Digest,
		heads: map[string]eventstore.Head{}}, nil
}

// fold adds the events of batch after the sealer's cursor. before is the
// cursor the batch was read after; events between the sealer's cursor and
// it (a new leader resumes publishing from the relay's cursor, which may
// be past the last seal) are read first.
func (l *leader) fold(ctx context.Context, before eventstore.Cursor, batch []eventstore.Envelope) error {
	s := l.seal
	for s.cursor.Compare(before) < 0 {
		events, err := l.r.read(ctx, s.cursor)
		if err != nil {
			return fmt.Errorf("seal: read from %s: %w", s.cursor, err)
		}
		if len(events) == 0 {
			return fmt.Errorf("seal: nothing to read after %s before %s", s.cursor, before)
		}
		if events[0].Cursor().Compare(before) > 0 {
			break // before lies between two events: a consumers' floor
		}
		for _, e := range events {
			if e.Cursor().Compare(before) > 0 {
				break
			}
			s.add(e)
		}
	}
	for _, e := range batch {
		if e.Cursor().Compare(s.cursor) > 0 {
			s.add(e)
		}
	}
	return nil
}

func (s *sealer) add(e eventstore.Envelope) {
	if len(s.heads) == 0 {
		s.since = time.Now()
	}
	s.digest = s.digest.Next(e.Hash)
	s.events++
	s.cursor = e.Cursor()
	s.heads[e.StreamID] = eventstore.Head{StreamID: e.StreamID, Version: e.Version, Hash: e.Hash}
}

// due reports whether a seal is to be written now: events were folded
// since the last one, the interval passed or the heads grew large, and no
// seal is being written.
func (s *sealer) due() bool {
	return s.writing == nil && len(s.heads) > 0 &&
		(time.Since(s.since) >= s.cfg.Interval || len(s.heads) >= s.cfg.MaxStreams)
}

// sealWrite is the outcome of writing one seal.
type sealWrite struct {
	seal  eventstore.Seal
	heads map[string]eventstore.Head
	since time.Time
	// stored is nil once the seal is in the seals table; published once it
	// is on NATS too.
	stored, published error
}

// sealNow starts writing a seal of everything folded so far, when anything
// is and no seal is being written. The writing (signing, the seals table's
// synchronous commit, JetStream's ack) runs beside the relay's rounds, off
// the events' publish path; collectSeal takes its outcome.
func (l *leader) sealNow(ctx context.Context) {
	s := l.seal
	if s.writing != nil || len(s.heads) == 0 {
		return
	}
	w := sealWrite{heads: s.heads, since: s.since, seal: eventstore.Seal{Seq: s.last.Seq + 1, Epoch: s.id.Epoch, SystemID: s.id.SystemID,
		Cursor: s.cursor.String(), Events: s.events, Digest: s.digest, SealedAt: time.Now()}}
	s.heads = make(map[string]eventstore.Head, len(w.heads))
	done := make(chan sealWrite, 1)
	s.writing = done
	go func() {
		w.seal.Heads = make([]eventstore.Head, 0, len(w.heads))
		for _, h := range w.heads {
			w.seal.Heads = append(w.seal.Heads, h)
		}
		w.seal.Sign(s.cfg.Key)
		if w.stored = s.cfg.Store.AppendSeal(ctx, w.seal); w.stored == nil {
			w.published = l.r.publishSeal(ctx, w.seal)
		}
		done <- w
	}()
}

// collectSeal takes the outcome of the seal being written, waiting for it
// when wait is set. A seal another relay stored first means this one lost
// the lock: the error ends the lead. A seal that could not be stored gives
// its heads back, to be sealed with the next.
func (l *leader) collectSeal(wait bool) error {
	s := l.seal
	if s == nil || s.writing == nil {
		return nil
	}
	var w sealWrite
	if wait {
		w = <-s.writing
	} else {
		select {
		case w = <-s.writing:
		default:
			return nil
		}
	}
	s.writing = nil
	switch {
	case errors.Is(w.stored, eventstore.ErrSealExists):
		return w.stored
	case w.stored != nil:
		l.log.Warn("relay: storing a seal failed, sealing later", "seal", w.seal.Seq, "err", w.stored)
		for id, h := range w.heads {
			if _, moved := s.heads[id]; !moved {
				s.heads[id] = h
			}
		}
		s.since = w.since
		return nil
	}
	s.last = w.seal
	s.cfg.Metrics.SealWritten(w.seal.Events)
	if w.published != nil {
		l.log.Warn("relay: publishing a seal failed, the seal check republishes it", "seal", w.seal.Seq, "err", w.published)
		l.s.check = true
	}
	return nil
}

// sealOnStop waits for the seal being written, then writes the last one,
// when the relay stops cleanly, trying again for a few seconds if the
// store fails.
func (l *leader) sealOnStop(ctx context.Context) {
	if l.seal == nil {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for try := 0; ; try++ {
		if err := l.collectSeal(true); err != nil {
			l.log.Warn("relay: the last seal failed", "err", err)
			return
		}
		if len(l.seal.heads) == 0 {
			return
		}
		if try > 0 {
			_ = sleep(sctx, 100*time.Millisecond)
		}
		if sctx.Err() != nil {
			l.log.Warn("relay: the last seal failed", "err", sctx.Err(), "unsealed_streams", len(l.seal.heads))
			return
		}
		l.sealNow(sctx)
	}
}

// publishSeal publishes seal on the seals' stream, deduplicated by its
// epoch and number.
func (r *Relay) publishSeal(ctx context.Context, seal eventstore.Seal) error {
	body, err := json.Marshal(seal)
	if err != nil {
		return err
	}
	m := nats.NewMsg(r.cfg.Seal.Subject)
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("seal-%s-%d-%d", seal.SystemID, seal.Epoch, seal.Seq))
	pctx, cancel := context.WithTimeout(ctx, r.cfg.AckTimeout)
	defer cancel()
	_, err = r.js.PublishMsg(pctx, m, jetstream.WithExpectStream(r.cfg.Seal.StreamName))
	return err
}

// EnsureSealStream creates or updates the seals' stream: every seal is
// kept, on file.
func EnsureSealStream(ctx context.Context, js jetstream.JetStream, cfg SealConfig, replicas int) error {
	cfg.setDefaults()
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: cfg.StreamName, Subjects: []string{cfg.Subject}, Storage: jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy, Replicas: max(replicas, 1), Duplicates: DefaultDuplicateWindow,
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", cfg.StreamName, err)
	}
	return nil
}

// lastNATSSeal returns the last seal on the seals' stream; found is false
// when it has none.
func (r *Relay) lastNATSSeal(ctx context.Context) (eventstore.Seal, bool, error) {
	var seal eventstore.Seal
	stream, err := r.js.Stream(ctx, r.cfg.Seal.StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if err := EnsureSealStream(ctx, r.js, *r.cfg.Seal, r.cfg.Stream.Replicas); err != nil {
			return seal, false, err
		}
		stream, err = r.js.Stream(ctx, r.cfg.Seal.StreamName)
	}
	if err != nil {
		return seal, false, err
	}
	msg, err := stream.GetLastMsgForSubject(ctx, r.cfg.Seal.Subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return seal, false, nil
	}
	if err != nil {
		return seal, false, fmt.Errorf("last seal on nats: %w", err)
	}
	if err := json.Unmarshal(msg.Data, &seal); err != nil {
		return seal, false, fmt.Errorf("last seal on nats (seq %d): %w", msg.Sequence, err)
	}
	return seal, true, nil
}

// ReadSeals returns every seal on the seals' stream, in stream order.
func ReadSeals(ctx context.Context, nc *nats.Conn, cfg SealConfig) ([]eventstore.Seal, error) {
	cfg.setDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, cfg.StreamName)
	if err != nil {
		return nil, fmt.Errorf("seals stream %s: %w", cfg.StreamName, err)
	}
	last := stream.CachedInfo().State.LastSeq
	var out []eventstore.Seal
	for seq := stream.CachedInfo().State.FirstSeq; seq > 0 && seq <= last; seq++ {
		msg, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("seals stream %s, message %d: %w", cfg.StreamName, seq, err)
		}
		var s eventstore.Seal
		if err := json.Unmarshal(msg.Data, &s); err != nil {
			return nil, fmt.Errorf("seals stream %s, message %d: %w", cfg.StreamName, seq, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// checkSeals compares the last seal on NATS with the store's (restore
// detection):
//
//   - NATS holds a later seal of the store's epoch: the store lost sealed
//     events, as a restore from an older backup does. The relay alerts
//     and starts a new epoch, so its next seals are told apart from the
//     lost ones (which verify then reports missing).
//   - the store holds seals NATS lacks (NATS lost them, or the stream was
//     recreated): the relay alerts, republishes them and has the events'
//     stream checked, which republishes the events it lacks.
func (l *leader) checkSeals(ctx context.Context) error {
	s := l.seal
	onNATS, found, err := l.r.lastNATSSeal(ctx)
	if err != nil {
		return err
	}
	switch {
	case found && (onNATS.Epoch > s.id.Epoch || onNATS.Epoch == s.id.Epoch && onNATS.Seq > s.last.Seq):
		msg := fmt.Sprintf("the store is behind the last seal on NATS: NATS has seal %d (epoch %d, %d events, position %s), "+
			"the store's last is seal %d (%d events): restored from a backup?", onNATS.Seq, onNATS.Epoch, onNATS.Events,
			onNATS.Cursor, s.last.Seq, s.last.Events)
		l.log.Error("relay: "+msg, "alert", "store_restored")
		id, err := s.cfg.Store.NewEpoch(ctx, msg)
		if err != nil {
			return err
		}
		s.id = id
		l.r.setAlert("store_behind", msg)
		s.cfg.Metrics.RestoreDetected("store_behind")
	case !found && s.last.Seq > 0 || found && onNATS.Epoch == s.id.Epoch && onNATS.Seq < s.last.Seq:
		msg := fmt.Sprintf("NATS is behind the store: its last seal is %d, the store's %d; republishing from seal %d",
			onNATS.Seq, s.last.Seq, onNATS.Seq+1)
		l.log.Warn("relay: "+msg, "alert", "nats_behind")
		l.r.setAlert("nats_behind", msg)
		s.cfg.Metrics.RestoreDetected("nats_behind")
		l.s.check = true
		if err := l.republishSeals(ctx, onNATS.Seq); err != nil {
			return err
		}
		l.r.setAlert("nats_behind", "")
	}
	return nil
}

// republishSeals publishes the stored seals after seq.
func (l *leader) republishSeals(ctx context.Context, after int64) error {
	for {
		seals, err := l.seal.cfg.Store.Seals(ctx, after, 500)
		if err != nil {
			return err
		}
		if len(seals) == 0 {
			return nil
		}
		for _, seal := range seals {
			if err := l.r.publishSeal(ctx, seal); err != nil {
				return fmt.Errorf("republish seal %d: %w", seal.Seq, err)
			}
			after = seal.Seq
		}
	}
}

// Alert returns what the relay found wrong between the store and NATS
// (a restored store, seals NATS lost), or "" when nothing is: for
// /readyz's detail.
func (r *Relay) Alert() string {
	r.alertMu.Lock()
	defer r.alertMu.Unlock()
	var msg string
	for _, k := range []string{"store_moved", "store_behind", "nats_behind"} {
		if a := r.alerts[k]; a != "" {
			if msg != "" {
				msg += "; "
			}
			msg += a
		}
	}
	return msg
}

func (r *Relay) setAlert(kind, msg string) {
	r.alertMu.Lock()
	defer r.alertMu.Unlock()
	if r.alerts == nil {
		r.alerts = map[string]string{}
	}
	r.alerts[kind] = msg
}
