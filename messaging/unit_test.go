package messaging

import (
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard/onboard/eventstore"
)

func TestSubjects(t *testing.T) {
	var c StreamConfig
	c.setDefaults()
	tests := []struct {
		name, got, want string
	}{
		{"event subject", c.EventSubject("customer", "customer.signed_up", "customer-0192", "verification"), "onboarding.events.customer.customer_signed_up.customer-0192.verification"},
		{"event subject, no route", c.EventSubject("customer", "customer.signed_up", "customer-0192", ""), "onboarding.events.customer.customer_signed_up.customer-0192._"},
		{"route filter", c.RoutedFilter("verification"), "onboarding.events.*.*.*.verification"},
		{"token with wildcards", SubjectToken("a.b*c>d e"), "a_b_c_d_e"},
		{"empty token", SubjectToken(""), "_"},
		{"type filter", c.EventTypeFilter("customer.signed_up"), "onboarding.events.*.customer_signed_up.>"},
		{"all events", c.AllEventsFilter(), "onboarding.events.>"},
		{"redrive", c.redriveSubject("billing"), "onboarding.redrive.billing"},
		{"dead letters", c.deadLetterSubject("billing"), "onboarding.deadletters.billing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"embedded without data dir", EmbeddedConfig{}.Validate()},
		{"embedded port out of range", EmbeddedConfig{DataDir: "x", Port: 70000}.Validate()},
		{"stream replicas", StreamConfig{Replicas: 7, SubjectPrefix: "a", RedrivePrefix: "b", DeadLetterPrefix: "c"}.Validate()},
		{"stream wildcard prefix", StreamConfig{Replicas: 1, SubjectPrefix: "a.>", RedrivePrefix: "b", DeadLetterPrefix: "c"}.Validate()},
		{"relay without store", RelayConfig{}.Validate()},
		{"router negative backoff", RouterConfig{BackOff: []time.Duration{-time.Second}}.Validate()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil {
				t.Error("no error")
			}
		})
	}
	if _, err := NewRelay(RelayConfig{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("NewRelay(zero) = %v, want ErrInvalidConfig", err)
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	e := eventstore.Envelope{
		ID: uuid.Must(uuid.NewV7()), StreamID: "customer-1", StreamType: "customer", Version: 3,
		Position: 42, TransactionID: 7, Type: "customer.signed_up", SchemaVersion: 1,
		Data:       json.RawMessage(`{"email":"a@example.com"}`),
		Metadata:   eventstore.Metadata{Actor: "api", CorrelationID: "c", Trace: map[string]string{"traceparent": "x"}},
		RecordedAt: time.Date(2026, 11, 25, 12, 0, 0, 123456000, time.UTC),
		PrevHash:   []byte{1, 2}, Hash: []byte{3, 4},
	}
	b, err := MarshalEnvelope(e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	gb, _ := MarshalEnvelope(got)
	if string(gb) != string(b) || got.Cursor() != e.Cursor() || !got.RecordedAt.Equal(e.RecordedAt) {
		t.Errorf("round trip changed the envelope:\n got %s\nwant %s", gb, b)
	}
	for _, bad := range []string{`{`, `{}`, `[]`} {
		if _, err := UnmarshalEnvelope([]byte(bad)); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("UnmarshalEnvelope(%s) = %v, want ErrInvalidMessage", bad, err)
		}
	}
	m, err := eventMsg(StreamConfig{SubjectPrefix: "p"}, e, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := cursorOf(m.Header); err != nil || c != e.Cursor() || m.Header.Get(HeaderMsgID) != e.ID.String() {
		t.Errorf("headers %v: cursor %v, %v", m.Header, c, err)
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("bad plan")
	err := Permanent(base)
	if !errors.Is(err, ErrPermanent) || !errors.Is(err, base) || err.Error() != "bad plan" {
		t.Errorf("Permanent(%v) = %v", base, err)
	}
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	ex := &ExhaustedError{Handler: "h", Err: base}
	if !errors.Is(ex, ErrDeliveriesExhausted) || !errors.Is(ex, base) || !isFinal(ex) || isFinal(base) {
		t.Errorf("ExhaustedError does not unwrap: %v", ex)
	}
}

// TestNextOfStream: the relay routes each event knowing the next event of
// its own stream in the batch, however the streams interleave.
func TestNextOfStream(t *testing.T) {
	ev := func(stream string, version int64) eventstore.Envelope {
		return eventstore.Envelope{StreamID: stream, Version: version}
	}
	batch := []eventstore.Envelope{ev("a", 1), ev("b", 1), ev("a", 2), ev("c", 1), ev("b", 2), ev("a", 3)}
	want := []string{"a/2", "b/2", "a/3", "", "", ""}
	got := nextOfStream(batch)
	if len(got) != len(batch) {
		t.Fatalf("got %d entries for %d events", len(got), len(batch))
	}
	for i, n := range got {
		s := ""
		if n != nil {
			s = n.StreamID + "/" + strconv.FormatInt(n.Version, 10)
		}
		if s != want[i] {
			t.Errorf("next of %s/%d = %q, want %q", batch[i].StreamID, batch[i].Version, s, want[i])
		}
	}
}
