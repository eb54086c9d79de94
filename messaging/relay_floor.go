package messaging

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onboard/onboard/eventstore"
)

// The republish-start rule: when NATS lost the events stream (a wiped
// store, a stream deleted and recreated), the relay publishes again from
// the lowest position any durable consumer may still need, not from the
// start of the log. So recovery costs what the consumers had not finished,
// not the log's age.
//
// What a consumer still needs is known only while NATS has it: the active
// relay records it every FloorInterval, as a floor per consumer in
// messaging_consumer_floors (the cursor up to which the consumer needs no
// event any more), and floor takes the lowest of them when the stream is
// gone. A consumer missing from NATS keeps its last floor for
// FloorRetention, so one whose worker is down still counts.

// consumerFloor is one consumer's floor: everything up to cursor is
// acknowledged or not for it. eventID, when set, is the event right after
// cursor, by which floor checks the cursor against the store.
type consumerFloor struct {
	consumer string
	cursor   eventstore.Cursor
	eventID  uuid.UUID
}

// floor returns where to publish from into a stream that lacks
// everything: the lowest floor recorded within FloorRetention of the
// newest, or the start of the log when there is none or when the store
// does not hold the event recorded after it.
func (r *Relay) floor(ctx context.Context) (eventstore.Cursor, error) {
	var tx, pos int64
	var id pgtype.UUID
	err := r.cfg.Pool.QueryRow(ctx, `SELECT transaction_id, position, event_id FROM messaging_consumer_floors
		WHERE relay = $1 AND seen_at >= (SELECT max(seen_at) FROM messaging_consumer_floors WHERE relay = $1) - $2::interval
		ORDER BY transaction_id, position LIMIT 1`, r.cfg.Name, r.cfg.FloorRetention).Scan(&tx, &pos, &id)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Cursor{}, fmt.Errorf("consumers' floor: %w", err)
	}
	c := eventstore.Cursor{TransactionID: uint64(tx), Position: pos}
	if !id.Valid {
		return c, nil
	}
	next, err := r.cfg.Store.ReadAll(ctx, c, 1)
	if err != nil {
		return eventstore.Cursor{}, fmt.Errorf("consumers' floor: %w", err)
	}
	if len(next) == 0 || next[0].ID != uuid.UUID(id.Bytes) {
		r.cfg.Logger.Warn("relay: the consumers' floor does not match the store, publishing from the start",
			"relay", r.cfg.Name, "floor", c.String(), "event", uuid.UUID(id.Bytes).String())
		return eventstore.Start, nil
	}
	return c, nil
}

// floorDue reports whether the consumers' floors are to be recorded: every
// FloorInterval, while no stream check is pending (the relay then knows
// which stream it publishes to).
func (l *leader) floorDue() bool {
	return !l.s.check && time.Since(l.s.flooredAt) >= l.r.cfg.FloorInterval
}

// recordFloors records the floor of every durable consumer of the events
// stream. A failure only leaves older floors, which are lower: it is
// logged, and the lead goes on.
func (l *leader) recordFloors(ctx context.Context) {
	l.s.flooredAt = time.Now()
	// A JetStream API short of breath drops requests unanswered: the
	// look-ups must not hold the lead. (The store's statement runs on the
	// lock session, which a deadline would break.)
	nctx, cancel := context.WithTimeout(ctx, l.r.cfg.AckTimeout)
	floors, err := l.r.consumerFloors(nctx, l.s.incarnation, l.s.from)
	cancel()
	if err == nil && len(floors) > 0 {
		err = storeFloors(ctx, l.conn, l.r.cfg.Name, floors)
	}
	if err != nil && ctx.Err() == nil {
		l.log.Warn("relay: recording the consumers' floors failed", "err", err)
	}
}

// consumerFloors returns the floors of the durable consumers of the
// stream incarnation the relay publishes to; upTo is the relay's
// acknowledged cursor there. It returns none when the stream is another
// incarnation before or after the look.
func (r *Relay) consumerFloors(ctx context.Context, incarnation int64, upTo eventstore.Cursor) ([]consumerFloor, error) {
	stream, err := r.js.Stream(ctx, r.cfg.Stream.Name)
	if err != nil {
		return nil, fmt.Errorf("stream info: %w", err)
	}
	if stream.CachedInfo().Created.UnixNano() != incarnation {
		return nil, nil
	}
	// A cluster may list a consumer twice while its leader moves: each
	// keeps its lowest floor.
	lowest := map[string]consumerFloor{}
	list := stream.ListConsumers(ctx)
	for info := range list.Info() {
		if info.Config.Durable == "" {
			continue
		}
		f, err := r.floorOf(ctx, info, upTo)
		if err != nil {
			return nil, fmt.Errorf("consumer %s: %w", info.Name, err)
		}
		if have, ok := lowest[f.consumer]; !ok || f.cursor.Compare(have.cursor) < 0 {
			lowest[f.consumer] = f
		}
	}
	if err := list.Err(); err != nil {
		return nil, fmt.Errorf("list consumers: %w", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream info: %w", err)
	}
	if info.Created.UnixNano() != incarnation {
		return nil, nil
	}
	floors := make([]consumerFloor, 0, len(lowest))
	for _, f := range lowest {
		floors = append(floors, f)
	}
	return floors, nil
}

// floorOf is one consumer's floor. Every message up to its ack floor is
// acknowledged, and so is every delivered one when none awaits an ack; the
// first event after that on its filters is the first it may still need.
// Without one, it needs nothing up to upTo. The leader answers the
// look-ups: a replica's direct get may not have the newest messages yet.
func (r *Relay) floorOf(ctx context.Context, info *jetstream.ConsumerInfo, upTo eventstore.Cursor) (consumerFloor, error) {
	f := consumerFloor{consumer: info.Name, cursor: upTo}
	if info.NumPending == 0 && info.NumAckPending == 0 {
		// Nothing on its filters is left to deliver or awaits an ack: no
		// look-up, which would scan the stream past every message of
		// other consumers.
		return f, nil
	}
	done := info.AckFloor.Stream
	if info.NumAckPending == 0 {
		done = max(done, info.Delivered.Stream)
	}
	found := false
	for _, subject := range r.eventFilters(info.Config) {
		h, ok, err := r.nextMsgHeader(ctx, done+1, subject)
		if err != nil {
			return f, err
		}
		if !ok {
			continue
		}
		c, err := cursorOf(h)
		if err != nil {
			return f, err
		}
		id, err := uuid.Parse(h.Get(HeaderMsgID))
		if err != nil {
			return f, fmt.Errorf("%w: %s: %w", ErrInvalidMessage, HeaderMsgID, err)
		}
		before := eventstore.Cursor{TransactionID: c.TransactionID, Position: c.Position - 1}
		if !found || before.Compare(f.cursor) < 0 {
			f.cursor, f.eventID, found = before, id, true
		}
	}
	return f, nil
}

// eventFilters returns the subjects on which a consumer with cfg gets
// relayed events: its filters within the events' subjects, or all events
// for a filter wider than them. Filters outside them (a handler's redrive
// subject) are left out.
func (r *Relay) eventFilters(cfg jetstream.ConsumerConfig) []string {
	filters := cfg.FilterSubjects
	if cfg.FilterSubject != "" {
		filters = append(filters, cfg.FilterSubject)
	}
	if len(filters) == 0 {
		filters = []string{">"}
	}
	all := r.cfg.Stream.AllEventsFilter()
	var out []string
	for _, f := range filters {
		switch {
		case strings.HasPrefix(f, r.cfg.Stream.SubjectPrefix+"."):
			out = append(out, f)
		case subjectMatches(f, r.cfg.Stream.EventSubject("t", "t", "t", "t")):
			out = append(out, all)
		}
	}
	return out
}

// subjectMatches reports whether subject matches pattern, with NATS's
// wildcards '*' (one token) and '>' (the rest).
func subjectMatches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		switch {
		case tok == ">":
			return i < len(s)
		case i >= len(s):
			return false
		case tok != "*" && tok != s[i]:
			return false
		}
	}
	return len(p) == len(s)
}

// nextMsgHeader returns the headers of the first message at or after seq
// on subject, asking the stream's leader ($JS.API.STREAM.MSG.GET, not a
// direct get); ok is false when there is none.
func (r *Relay) nextMsgHeader(ctx context.Context, seq uint64, subject string) (nats.Header, bool, error) {
	req, err := json.Marshal(struct {
		Seq  uint64 `json:"seq"`
		Next string `json:"next_by_subj"`
	}{seq, subject})
	if err != nil {
		return nil, false, err
	}
	msg, err := r.cfg.Conn.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+r.cfg.Stream.Name, req)
	if err != nil {
		return nil, false, fmt.Errorf("get message after %d on %s: %w", seq, subject, err)
	}
	var resp struct {
		Message *struct {
			Header []byte `json:"hdrs"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, false, fmt.Errorf("get message after %d on %s: %w", seq, subject, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, false, nil
	case resp.Error != nil:
		return nil, false, fmt.Errorf("get message after %d on %s: %w", seq, subject, resp.Error)
	case resp.Message == nil:
		return nil, false, fmt.Errorf("get message after %d on %s: empty answer", seq, subject)
	}
	h, err := nats.DecodeHeadersMsg(resp.Message.Header)
	if err != nil {
		return nil, false, fmt.Errorf("get message after %d on %s: %w", seq, subject, err)
	}
	return h, true, nil
}

// storeFloors stores floors, each with the time it was seen.
func storeFloors(ctx context.Context, conn *pgx.Conn, relay string, floors []consumerFloor) error {
	consumers := make([]string, len(floors))
	txs := make([]int64, len(floors))
	positions := make([]int64, len(floors))
	ids := make([]pgtype.UUID, len(floors))
	for i, f := range floors {
		consumers[i], txs[i], positions[i] = f.consumer, int64(f.cursor.TransactionID), f.cursor.Position
		ids[i] = pgtype.UUID{Bytes: f.eventID, Valid: f.eventID != uuid.Nil}
	}
	_, err := conn.Exec(ctx, `INSERT INTO messaging_consumer_floors (relay, consumer, transaction_id, position, event_id)
		SELECT $1, c, t, p, e FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::uuid[]) AS u(c, t, p, e)
		ON CONFLICT (relay, consumer) DO UPDATE SET transaction_id = excluded.transaction_id,
			position = excluded.position, event_id = excluded.event_id, seen_at = now()`,
		relay, consumers, txs, positions, ids)
	if err != nil {
		return fmt.Errorf("store consumers' floors: %w", err)
	}
	return nil
}
