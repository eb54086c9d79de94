package domain_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/onboard/onboard/domain"
)

func dataKey(_ *testing.T, b byte) []byte { return bytes.Repeat([]byte{b}, domain.DataKeySize) }

func TestPersonalFieldsAreDeclaredOnTheEvents(t *testing.T) {
	tests := []struct {
		e    domain.Event
		want []string
	}{
		{domain.SignedUp{}, []string{"email", "company", "contact_name", "country"}},
		{domain.VerificationRejected{}, []string{"reason"}},
		{domain.SupportNotified{}, []string{"reason"}},
		{domain.StepRequested{}, nil},
		{domain.PersonalDataErased{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.e.EventType(), func(t *testing.T) {
			got := domain.PersonalFields(tt.e)
			if strings.Join(got, ",") != strings.Join(tt.want, ",") || domain.HasPersonalData(tt.e) != (len(tt.want) > 0) ||
				domain.HasPersonalDataType(tt.e.EventType()) != (len(tt.want) > 0) {
				t.Fatalf("personal fields = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEncryptedFieldsStoreNoPlaintextAndDecryptWithTheKey(t *testing.T) {
	key := dataKey(t, 1)
	e := signedUp()
	encrypted, err := domain.EncryptPersonal(e, custID, key)
	if err != nil {
		t.Fatal(err)
	}
	_, _, data, err := domain.EncodeEvent(encrypted)
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{e.Email, e.Company, e.ContactName, "Ada", "lovelace"} {
		if bytes.Contains(bytes.ToLower(data), []byte(strings.ToLower(plain))) {
			t.Fatalf("stored event holds %q: %s", plain, data)
		}
	}
	if !strings.Contains(string(data), string(domain.PlanGrowth)) || !strings.Contains(string(data), custID.String()) {
		t.Fatalf("fields that are not personal were encrypted: %s", data)
	}
	decoded, err := domain.DecodeEvent(domain.TypeSignedUp, data)
	if err != nil {
		t.Fatal(err)
	}
	decrypted, err := domain.DecryptPersonal(decoded, custID, key)
	if err != nil {
		t.Fatal(err)
	}
	if decrypted != domain.Event(e) {
		t.Fatalf("decrypted %+v, want %+v", decrypted, e)
	}
	if decoded.(domain.SignedUp).Email == e.Email {
		t.Fatal("EncryptPersonal changed its argument, or decoding decrypted the field")
	}
}

func TestDecryptPersonal(t *testing.T) {
	key := dataKey(t, 1)
	encrypted, err := domain.EncryptPersonal(signedUp(), custID, key)
	if err != nil {
		t.Fatal(err)
	}
	other := custID
	other[15] ^= 1
	t.Run("destroyed key reads as erased", func(t *testing.T) {
		got, err := domain.DecryptPersonal(encrypted, custID, nil)
		if err != nil {
			t.Fatal(err)
		}
		s := got.(domain.SignedUp)
		if s.Email != domain.Erased || s.ContactName != domain.Erased || s.Plan != domain.PlanGrowth {
			t.Fatalf("got %+v", s)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		if _, err := domain.DecryptPersonal(encrypted, custID, dataKey(t, 2)); !errors.Is(err, domain.ErrPersonalDataKey) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("moved to another customer", func(t *testing.T) {
		if _, err := domain.DecryptPersonal(encrypted, other, key); !errors.Is(err, domain.ErrPersonalDataKey) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("moved to another field", func(t *testing.T) {
		s := encrypted.(domain.SignedUp)
		s.Company = s.Email
		if _, err := domain.DecryptPersonal(s, custID, key); !errors.Is(err, domain.ErrPersonalDataKey) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("legacy plaintext reads as it is", func(t *testing.T) {
		got, err := domain.DecryptPersonal(signedUp(), custID, nil)
		if err != nil || got != domain.Event(signedUp()) {
			t.Fatalf("got %+v, %v", got, err)
		}
	})
}

func TestDecryptHistory(t *testing.T) {
	key := dataKey(t, 1)
	encrypted, err := domain.EncryptPersonal(signedUp(), custID, key)
	if err != nil {
		t.Fatal(err)
	}
	erased := domain.PersonalDataErased{Operator: "op", Reason: "art. 17"}
	tests := []struct {
		name      string
		history   []domain.Event
		key       []byte
		noKeys    bool
		wantEmail string
		wantCalls int
	}{
		{name: "decrypted with the key, looked up once", history: []domain.Event{encrypted, encrypted}, key: key, wantEmail: signedUp().Email, wantCalls: 1},
		{name: "destroyed key reads as erased", history: []domain.Event{encrypted}, wantEmail: domain.Erased, wantCalls: 1},
		{name: "a recorded erasure wins over a remembered key", history: []domain.Event{encrypted, erased}, key: key, wantEmail: domain.Erased},
		{name: "without the key store", history: []domain.Event{encrypted}, noKeys: true, wantEmail: domain.Encrypted},
		{name: "without the key store, a recorded erasure", history: []domain.Event{encrypted, erased}, noKeys: true, wantEmail: domain.Erased},
		{name: "no personal data, no look-up", history: []domain.Event{erased}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			lookup := func() ([]byte, error) { calls++; return tt.key, nil }
			if tt.noKeys {
				lookup = nil
			}
			got, err := domain.DecryptHistory(custID, tt.history, lookup)
			if err != nil {
				t.Fatal(err)
			}
			if s, ok := got[0].(domain.SignedUp); ok && s.Email != tt.wantEmail {
				t.Errorf("email %q, want %q", s.Email, tt.wantEmail)
			}
			if calls != tt.wantCalls {
				t.Errorf("%d key look-ups, want %d", calls, tt.wantCalls)
			}
			if tt.history[0] != domain.Event(encrypted) && tt.history[0] != domain.Event(erased) {
				t.Error("DecryptHistory changed its argument")
			}
		})
	}
	t.Run("a failed look-up is an error", func(t *testing.T) {
		boom := errors.New("boom")
		if _, err := domain.DecryptHistory(custID, []domain.Event{encrypted}, func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestErasureShowsErasedFieldsAndKeepsTheState(t *testing.T) {
	c := load(t, hActive)
	if err := c.ErasePersonalData("op@example.com", "art. 17 request"); err != nil {
		t.Fatal(err)
	}
	s := c.Snapshot()
	if s.State != domain.StateActive || s.Email != domain.Erased || s.Company != domain.Erased || s.Plan != domain.PlanGrowth {
		t.Fatalf("snapshot after erasure: %+v", s)
	}
	if err := c.ErasePersonalData("op@example.com", "again"); !errors.Is(err, domain.ErrDuplicateCommand) {
		t.Fatalf("second erasure: %v", err)
	}
	if err := c.RecordProviderDataDeleted("crm", true); err != nil {
		t.Fatal(err)
	}
	if err := c.RecordProviderDataDeleted("crm", true); !errors.Is(err, domain.ErrDuplicateCommand) {
		t.Fatalf("second crm deletion: %v", err)
	}
	if !c.ProviderDataDeleted("crm") || c.ProviderDataDeleted("email") {
		t.Fatal("provider deletions not tracked")
	}
	if err := load(t, hActive).RecordProviderDataDeleted("crm", true); !errors.Is(err, domain.ErrInvalidTransition) {
		t.Fatalf("deletion before erasure: %v", err)
	}
}

func TestEmailIndexIsKeyedAndNormalized(t *testing.T) {
	a := domain.EmailIndex([]byte("k1"), " Ada@Example.com ")
	if a != domain.EmailIndex([]byte("k1"), "ada@example.com") {
		t.Fatal("the index depends on case or spaces")
	}
	if a == domain.EmailIndex([]byte("k2"), "ada@example.com") {
		t.Fatal("the index does not depend on the key")
	}
	if strings.Contains(a, "ada") {
		t.Fatal("the index holds the email")
	}
	var v any
	if json.Unmarshal([]byte(`"`+a+`"`), &v) != nil || len(a) != 64 {
		t.Fatalf("index %q is not 64 hex digits", a)
	}
}

func BenchmarkEncryptPersonal(b *testing.B) {
	key, e := dataKey(nil, 1), signedUp()
	for b.Loop() {
		if _, err := domain.EncryptPersonal(e, custID, key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecryptPersonal(b *testing.B) {
	key := dataKey(nil, 1)
	encrypted, err := domain.EncryptPersonal(signedUp(), custID, key)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := domain.DecryptPersonal(encrypted, custID, key); err != nil {
			b.Fatal(err)
		}
	}
}
