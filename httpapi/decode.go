package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"unicode/utf8"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 1 << 20

// requestError is a request the API refuses before acting on it.
type requestError struct{ problem Problem }

func (e *requestError) Error() string { return e.problem.Detail }

func badRequest(typ string, status int, format string, args ...any) error {
	return &requestError{Problem{Type: typ, Status: status, Detail: fmt.Sprintf(format, args...)}}
}

// readBody reads the whole body, bounded, and checks that it is JSON: the
// content type, valid UTF-8, no duplicate object keys.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && mt != "application/merge-patch+json") {
		return nil, badRequest(ProblemUnsupportedMedia, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, badRequest(ProblemTooLarge, http.StatusRequestEntityTooLarge, "the body exceeds %d bytes", MaxBodyBytes)
	}
	if err != nil {
		return nil, badRequest(ProblemMalformed, http.StatusBadRequest, "reading the body failed: %v", err)
	}
	if !utf8.Valid(body) {
		return nil, badRequest(ProblemMalformed, http.StatusBadRequest, "the body is not valid UTF-8")
	}
	if err := checkDuplicateKeys(body); err != nil {
		return nil, badRequest(ProblemMalformed, http.StatusBadRequest, "%v", err)
	}
	return body, nil
}

// decodeStrict decodes body into v, refusing unknown fields, wrong types
// and trailing data, each with a message naming the problem.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.Is(err, io.EOF):
			return badRequest(ProblemMalformed, http.StatusBadRequest, "the body is empty")
		case errors.As(err, &typeErr):
			return badRequest(ProblemMalformed, http.StatusBadRequest, "field %q must be %s, not %s", typeErr.Field, typeErr.Type, typeErr.Value)
		case errors.As(err, &syntaxErr):
			return badRequest(ProblemMalformed, http.StatusBadRequest, "malformed JSON at byte %d: %v", syntaxErr.Offset, err)
		default:
			return badRequest(ProblemMalformed, http.StatusBadRequest, "malformed JSON: %v", err)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest(ProblemMalformed, http.StatusBadRequest, "trailing data after the JSON object")
	}
	return nil
}

// checkDuplicateKeys walks the JSON and fails on an object with a key given
// twice: encoding/json would silently keep the last one.
func checkDuplicateKeys(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var walk func() error
	walk = func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		delim, ok := tok.(json.Delim)
		if !ok {
			return nil
		}
		switch delim {
		case '{':
			seen := map[string]bool{}
			for dec.More() {
				keyTok, err := dec.Token()
				if err != nil {
					return err
				}
				key, _ := keyTok.(string)
				if seen[key] {
					return duplicateKeyError(key)
				}
				seen[key] = true
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case '[':
			for dec.More() {
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	if err := walk(); err != nil && !errors.Is(err, io.EOF) {
		var syntaxErr *json.SyntaxError
		if errors.As(err, &syntaxErr) {
			return fmt.Errorf("malformed JSON at byte %d: %v", syntaxErr.Offset, err)
		}
		var dup duplicateKeyError
		if errors.As(err, &dup) {
			return err
		}
		return fmt.Errorf("malformed JSON: %v", err)
	}
	return nil
}

type duplicateKeyError string

func (k duplicateKeyError) Error() string { return fmt.Sprintf("duplicate key %q", string(k)) }
