package httpapi

import (
	"encoding/json"
	"net/http"
)

// Problem is an RFC 9457 problem details object. Type is stable per error,
// so clients branch on it rather than on Title or Detail.
type Problem struct {
	Type     string         `json:"type"`
	Title    string         `json:"title"`
	Status   int            `json:"status"`
	Detail   string         `json:"detail,omitempty"`
	Instance string         `json:"instance,omitempty"`
	Errors   []FieldProblem `json:"errors,omitempty"`
	// Extra members specific to the problem type (existing_id, state,
	// behind, ...), merged into the top-level object.
	Extra map[string]any `json:"-"`
}

// FieldProblem is one invalid input: a field of the JSON body, located by
// an RFC 6901 JSON pointer, or a query parameter, named. A JSON pointer
// locates nothing in a query string, so a parameter is not given one.
type FieldProblem struct {
	Pointer   string `json:"pointer,omitempty"`
	Parameter string `json:"parameter,omitempty"`
	Detail    string `json:"detail"`
}

// Problem type URIs. They are identifiers, not links that must resolve.
const (
	problemBase             = "https://onboard.dev/problems/"
	ProblemValidation       = problemBase + "validation"
	ProblemMalformed        = problemBase + "malformed-request"
	ProblemNotFound         = problemBase + "not-found"
	ProblemInvalidState     = problemBase + "invalid-state"
	ProblemConflict         = problemBase + "conflict"
	ProblemEmailTaken       = problemBase + "email-taken"
	ProblemPrecondition     = problemBase + "precondition-failed"
	ProblemUnauthorized     = problemBase + "unauthorized"
	ProblemForbidden        = problemBase + "forbidden"
	ProblemTooLarge         = problemBase + "payload-too-large"
	ProblemUnsupportedMedia = problemBase + "unsupported-media-type"
	ProblemRateLimited      = problemBase + "rate-limited"
	ProblemIdempotencyReuse = problemBase + "idempotency-key-reused"
	ProblemIdempotencyBusy  = problemBase + "idempotency-key-in-flight"
	ProblemIdempotencyKey   = problemBase + "idempotency-key"
	ProblemNotCaughtUp      = problemBase + "projection-behind"
	ProblemUnavailable      = problemBase + "unavailable"
	ProblemInternal         = problemBase + "internal"
)

// MarshalJSON merges Extra into the object.
func (p Problem) MarshalJSON() ([]byte, error) {
	type plain Problem
	base, err := json.Marshal(plain(p))
	if err != nil || len(p.Extra) == 0 {
		return base, err
	}
	var merged map[string]any
	if err := json.Unmarshal(base, &merged); err != nil {
		return nil, err
	}
	for k, v := range p.Extra {
		if _, taken := merged[k]; !taken {
			merged[k] = v
		}
	}
	return json.Marshal(merged)
}

// writeProblem answers with p as application/problem+json.
func writeProblem(w http.ResponseWriter, p Problem) {
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	body, err := json.Marshal(p)
	if err != nil {
		body = []byte(`{"type":"` + ProblemInternal + `","title":"Internal Server Error","status":500}`)
		p.Status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}

// writeJSON answers with v as application/json.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeProblem(w, Problem{Type: ProblemInternal, Status: http.StatusInternalServerError, Detail: "encoding the response failed"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
