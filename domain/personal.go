package domain

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/google/uuid"
)

// Personal data is declared once, on the events' fields: a string field
// tagged `personal:"true"` holds personal data. Such a field is stored
// encrypted (AES-256-GCM under the customer's data key, bound to the
// customer and the field), so the log, its hash chain, JetStream, dead
// letters and exports carry only ciphertext. Destroying the key erases the
// data: the encrypted fields then read as Erased. A field stored before
// encryption existed is plain text and reads as it is; such a log is
// covered by an erasure only once migrated (docs/architecture.md, "Personal data").

// Erased is what an encrypted field reads as once its key is destroyed, and
// what read models show in its place.
const Erased = "[erased]"

// DataKeySize is the size of a data key: AES-256.
const DataKeySize = 32

// encryptedPrefix marks an encrypted field's value and names its format: the
// standard base64 of GCM's random nonce, ciphertext and tag.
const encryptedPrefix = "pd1:"

// ErrPersonalDataKey: an encrypted field did not decrypt with the key given.
var ErrPersonalDataKey = errors.New("personal data does not decrypt with the customer's key")

// dataKey returns the AEAD of a raw data key.
func dataKey(raw []byte) (cipher.AEAD, error) {
	if len(raw) != DataKeySize {
		return nil, fmt.Errorf("data key: %d bytes, want %d", len(raw), DataKeySize)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// IsEncrypted reports whether a field's value is encrypted.
func IsEncrypted(value string) bool { return strings.HasPrefix(value, encryptedPrefix) }

// HasPersonalData reports whether e's type declares personal fields.
func HasPersonalData(e Event) bool { return len(personalFieldsOf(reflect.TypeOf(e))) > 0 }

// PersonalFields returns the JSON names of e's personal fields.
func PersonalFields(e Event) []string {
	var out []string
	for _, f := range personalFieldsOf(reflect.TypeOf(e)) {
		out = append(out, f.name)
	}
	return out
}

// EncryptPersonal returns e with its personal fields encrypted under the
// data key, bound to the customer and the field. Empty and already
// encrypted fields are left as they are.
func EncryptPersonal(e Event, customer uuid.UUID, key []byte) (Event, error) {
	if !HasPersonalData(e) {
		return e, nil
	}
	aead, err := dataKey(key)
	if err != nil {
		return nil, err
	}
	return rewritePersonal(e, func(name, v string) (string, error) {
		if v == "" || IsEncrypted(v) {
			return v, nil
		}
		ct := aead.Seal(nil, nil, []byte(v), aad(customer, name))
		return encryptedPrefix + base64.StdEncoding.EncodeToString(ct), nil
	})
}

// DecryptPersonal returns e with its encrypted fields decrypted with the
// data key, or, when key is nil (destroyed, or never made), set to Erased.
// Plain fields (stored before encryption existed, or already decrypted) are
// left as they are. An encrypted field that does not decrypt is
// ErrPersonalDataKey.
func DecryptPersonal(e Event, customer uuid.UUID, key []byte) (Event, error) {
	if !HasPersonalData(e) {
		return e, nil
	}
	var aead cipher.AEAD
	if key != nil {
		var err error
		if aead, err = dataKey(key); err != nil {
			return nil, err
		}
	}
	return rewritePersonal(e, func(name, v string) (string, error) {
		if !IsEncrypted(v) {
			return v, nil
		}
		if aead == nil {
			return Erased, nil
		}
		ct, err := base64.StdEncoding.DecodeString(v[len(encryptedPrefix):])
		if err != nil {
			return "", fmt.Errorf("%s: %w", name, ErrPersonalDataKey)
		}
		pt, err := aead.Open(nil, nil, ct, aad(customer, name))
		if err != nil {
			return "", fmt.Errorf("%s: %w", name, ErrPersonalDataKey)
		}
		return string(pt), nil
	})
}

// DecryptHistory returns a customer's history, from its first version,
// with every personal field decrypted: the one rule by which readers of a
// stream (timeline, past states, subject access, replay, diff, explain)
// show personal data. A history that records the erasure reads as Erased,
// whatever a key cache still holds and with or without a key store.
// Otherwise key returns the customer's data key, nil when there is none
// (destroyed, or never made: Erased), called at most once and only when an
// event holds personal data; a nil key (a reader without the key store)
// shows encrypted fields as Encrypted. history itself is left as it is.
func DecryptHistory(customer uuid.UUID, history []Event, key func() ([]byte, error)) ([]Event, error) {
	var k []byte
	erased := slices.ContainsFunc(history, func(e Event) bool { _, ok := e.(PersonalDataErased); return ok })
	looked := erased
	out := make([]Event, len(history))
	for i, e := range history {
		switch {
		case !HasPersonalData(e):
		case key == nil && !erased:
			e = MaskEncrypted(e)
		default:
			var err error
			if !looked {
				if k, err = key(); err != nil {
					return nil, fmt.Errorf("data key: %w", err)
				}
				looked = true
			}
			if e, err = DecryptPersonal(e, customer, k); err != nil {
				return nil, fmt.Errorf("version %d: %w", i+1, err)
			}
		}
		out[i] = e
	}
	return out, nil
}

// Decrypt returns the details with their encrypted fields decrypted with
// key, or set to Erased when key is nil.
func (d SignupDetails) Decrypt(customer uuid.UUID, key []byte) (SignupDetails, error) {
	e, err := DecryptPersonal(SignedUp{Email: d.Email, Company: d.Company, ContactName: d.ContactName, Country: d.Country}, customer, key)
	if err != nil {
		return d, err
	}
	s := e.(SignedUp)
	d.Email, d.Company, d.ContactName, d.Country = s.Email, s.Company, s.ContactName, s.Country
	return d, nil
}

// erased returns the details with every personal field set to Erased.
func (d SignupDetails) erased() SignupDetails {
	d.Email, d.Company, d.ContactName, d.Country = Erased, Erased, Erased, Erased
	return d
}

// EmailIndex is the keyed hash (HMAC-SHA256) of a normalized email, which
// reserves the email without storing it. The key is one of its own, not a
// data key: it must outlive every customer.
func EmailIndex(key []byte, email string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(NormalizeEmail(email)))
	return hex.EncodeToString(m.Sum(nil))
}

// aad binds an encrypted value to its customer and field, so that it cannot be
// moved to another customer's stream or another field.
func aad(customer uuid.UUID, field string) []byte {
	return []byte(customer.String() + "/" + field)
}

type personalField struct {
	index int
	name  string
}

// personalFields caches each event type's personal fields, found from the
// tags once per type.
var personalFields sync.Map // reflect.Type → []personalField

func personalFieldsOf(t reflect.Type) []personalField {
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	if v, ok := personalFields.Load(t); ok {
		return v.([]personalField)
	}
	var out []personalField
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag.Get("personal") != "true" {
			continue
		}
		if f.Type.Kind() != reflect.String {
			panic(fmt.Sprintf("domain: personal field %s.%s is not a string", t.Name(), f.Name))
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		out = append(out, personalField{index: i, name: name})
	}
	personalFields.Store(t, out)
	return out
}

// rewritePersonal returns a copy of e with each personal field replaced by
// what rewrite makes of it; e itself is left as it is.
func rewritePersonal(e Event, rewrite func(name, value string) (string, error)) (Event, error) {
	fields := personalFieldsOf(reflect.TypeOf(e))
	if len(fields) == 0 {
		return e, nil
	}
	v := reflect.New(reflect.TypeOf(e)).Elem()
	v.Set(reflect.ValueOf(e))
	for _, f := range fields {
		fv := v.Field(f.index)
		out, err := rewrite(f.name, fv.String())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.EventType(), err)
		}
		fv.SetString(out)
	}
	return v.Interface().(Event), nil
}

// ErasePersonal returns e with every personal field that holds a value set
// to Erased: how an event is stored when its customer's key is already
// destroyed.
func ErasePersonal(e Event) Event {
	out, _ := rewritePersonal(e, func(_, v string) (string, error) {
		if v == "" {
			return v, nil
		}
		return Erased, nil
	})
	return out
}

// Encrypted is what an encrypted field shows as to a reader without the
// key store (an audit run without the master key).
const Encrypted = "[encrypted]"

// MaskEncrypted returns e with its encrypted fields shown as Encrypted.
func MaskEncrypted(e Event) Event {
	out, _ := rewritePersonal(e, func(_, v string) (string, error) {
		if IsEncrypted(v) {
			return Encrypted, nil
		}
		return v, nil
	})
	return out
}

// HasPersonalDataType reports whether events of the stored type name
// declare personal fields, for readers that have not decoded them.
func HasPersonalDataType(eventType string) bool { return personalTypes()[eventType] }

var personalTypes = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{}
	for typ, decode := range decoders {
		if e, err := decode([]byte("{}")); err == nil && HasPersonalData(e) {
			m[typ] = true
		}
	}
	return m
})
