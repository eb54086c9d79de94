package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
)

// FuzzDecodeSignup feeds arbitrary bodies to the signup decoding: it must
// never panic, must refuse what encoding/json refuses, and whatever it
// accepts must be a JSON object without duplicate keys that encoding/json
// decodes to the same request.
func FuzzDecodeSignup(f *testing.F) {
	f.Add([]byte(`{"email":"a@example.com","company":"C","contact_name":"N","country":"DE","plan":"growth"}`))
	f.Add([]byte(`{"email":"a@example.com","email":"b@example.com"}`))
	f.Add([]byte(`{"email":1}`))
	f.Add([]byte(`{"email":"x"} trailing`))
	f.Add([]byte(`[{"a":{"a":1,"a":2}}]`))
	f.Add([]byte("{\"email\":\"\xff\"}"))
	f.Fuzz(func(t *testing.T, body []byte) {
		if err := checkDuplicateKeys(body); err != nil {
			return
		}
		var req signupRequest
		err := decodeStrict(body, &req)
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) || re.problem.Status != 400 {
				t.Fatalf("decode error is not a 400 problem: %v", err)
			}
			return
		}
		var again signupRequest
		if err := json.Unmarshal(body, &again); err != nil {
			t.Fatalf("accepted a body encoding/json refuses: %v", err)
		}
		if again != req {
			t.Fatalf("decoded %+v, encoding/json says %+v", req, again)
		}
	})
}

// FuzzFingerprint: the idempotency fingerprint tells bodies apart and is
// stable for the same request.
func FuzzFingerprint(f *testing.F) {
	f.Add([]byte(`{"a":1}`), []byte(`{"a":2}`))
	f.Add([]byte(``), []byte(` `))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		r := newTestRequest("POST", "/v1/customers")
		fa, fb := fingerprint(r, a), fingerprint(r, b)
		if fa != fingerprint(r, a) {
			t.Fatal("fingerprint not stable")
		}
		if (string(a) == string(b)) != (fa == fb) {
			t.Fatalf("bodies %q and %q: fingerprints %s, %s", a, b, fa, fb)
		}
		if other := fingerprint(newTestRequest("POST", "/v1/customers/x/cancel"), a); other == fa {
			t.Fatal("the same body on another route has the same fingerprint")
		}
	})
}

func newTestRequest(method, path string) *http.Request {
	r, err := http.NewRequest(method, "http://onboard.test"+path, nil)
	if err != nil {
		panic(err)
	}
	return r
}
