package httpapi

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/projections"
)

// queryParams is a request's query, checked against the parameters its
// route takes.
type queryParams url.Values

// readQuery parses the request's query and refuses what the route would
// otherwise silently ignore: a query that does not parse, a parameter the
// route does not take (a typo such as ?sate=paused would list every
// customer), and a parameter given more than once (only one value would
// count).
func readQuery(r *http.Request, takes ...string) (queryParams, error) {
	values, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &queryError{Problem{Type: ProblemMalformed, Status: http.StatusBadRequest,
			Detail: fmt.Sprintf("the query string does not parse: %v", err)}}
	}
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	sort.Strings(names)
	var bad []FieldProblem
	for _, name := range names {
		switch {
		case !slices.Contains(takes, name):
			detail := "is not a parameter of this route"
			if len(takes) > 0 {
				detail += "; it takes " + strings.Join(takes, ", ")
			}
			bad = append(bad, FieldProblem{Parameter: name, Detail: detail})
		case len(values[name]) > 1:
			bad = append(bad, FieldProblem{Parameter: name, Detail: fmt.Sprintf("is given %d times; give it once", len(values[name]))})
		}
	}
	if len(bad) > 0 {
		return nil, &queryError{Problem{Type: ProblemMalformed, Status: http.StatusBadRequest,
			Detail: "the query has parameters this route does not take, or takes once", Errors: bad}}
	}
	return queryParams(values), nil
}

// value returns the parameter's value, and whether the query gives it.
func (q queryParams) value(name string) (string, bool) {
	v, ok := q[name]
	if !ok {
		return "", false
	}
	return v[0], true
}

// queryBad is the 400 of an invalid parameter, named in the problem's
// errors.
func queryBad(param, format string, args ...any) error {
	detail := fmt.Sprintf(format, args...)
	return &queryError{Problem{Type: ProblemMalformed, Status: http.StatusBadRequest, Detail: detail,
		Errors: []FieldProblem{{Parameter: param, Detail: detail}}}}
}

// limit reads ?limit: absent means the read model's default; a value
// above projections.MaxListLimit is served as that maximum.
func (q queryParams) limit() (int, error) {
	raw, ok := q.value("limit")
	if !ok {
		return 0, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 {
		return 0, queryBad("limit", "limit %q is not a positive integer", raw)
	}
	return projections.ClampLimit(n), nil
}

// minPosition reads ?min_position: a global position N (as the command API
// returns it) or a cursor tx/pos. wait is false when there is nothing to
// wait for: no parameter, or position 0.
func (q queryParams) minPosition() (target eventstore.Cursor, isCursor, wait bool, err error) {
	raw, ok := q.value("min_position")
	if !ok {
		return eventstore.Cursor{}, false, false, nil
	}
	if strings.Contains(raw, "/") {
		c, err := eventstore.ParseCursor(raw)
		if err != nil || c.Position < 0 {
			return eventstore.Cursor{}, false, false, queryBad("min_position", "min_position %q is neither a position nor a cursor", raw)
		}
		return c, true, true, nil
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < 0 {
		return eventstore.Cursor{}, false, false, queryBad("min_position", "min_position %q is not a non-negative integer", raw)
	}
	return eventstore.Cursor{Position: n}, false, n > 0, nil
}

// The list cursor is opaque to clients: a version byte and the last id of
// the page, base64url. The version lets the keyset change later.
const queryCursorVersion = 1

func encodeQueryCursor(id uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{queryCursorVersion}, id[:]...))
}

func decodeQueryCursor(s string) (uuid.UUID, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 17 || b[0] != queryCursorVersion {
		return uuid.Nil, queryBad("cursor", "cursor %q is not a cursor this API issued", s)
	}
	id, _ := uuid.FromBytes(b[1:])
	if id == uuid.Nil {
		return uuid.Nil, queryBad("cursor", "cursor %q is not a cursor this API issued", s)
	}
	return id, nil
}
