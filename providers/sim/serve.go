package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/onboard/onboard/providers"
)

// effect is a provider operation: given the request and its body, it
// changes the state (under s.mu) and returns the status and the JSON
// answer. It must validate before changing anything.
type effect func(r *http.Request, body []byte) (int, any)

// answer is a complete response, as stored under an idempotency key.
type answer struct {
	status int
	body   []byte
}

type idemRecord struct {
	fingerprint string
	done        bool
	ans         answer
}

// faultOutage counts the requests refused by an outage.
const faultOutage Fault = "outage"

// draw decides the fate of one request: a script entry first, then the
// random rates.
func (s *Simulator) draw(provider string, mutating bool) Fault {
	pc := s.cfg.Providers[provider]
	f := s.drawAny(provider, pc)
	if !mutating && f != Fault503 && f != Fault429 && f != FaultReset && f != FaultTimeout && f != faultOutage {
		// A read has no effect to decline or lose.
		return FaultNone
	}
	return f
}

func (s *Simulator) drawAny(provider string, pc ProviderConfig) Fault {
	if len(pc.Script) > 0 {
		f := pc.Script[0]
		pc.Script = pc.Script[1:]
		s.cfg.Providers[provider] = pc
		return f
	}
	if pc.Outage.Down || s.cfg.Now().Before(pc.Outage.Until) {
		return faultOutage
	}
	if pc.TransientRate > 0 && s.rng.Float64() < pc.TransientRate {
		return pc.TransientKinds[s.rng.IntN(len(pc.TransientKinds))]
	}
	if pc.PermanentRate > 0 && s.rng.Float64() < pc.PermanentRate {
		if provider == providers.ProviderPayments {
			return Fault402
		}
		return Fault422
	}
	if pc.LostResponseRate > 0 && s.rng.Float64() < pc.LostResponseRate {
		if pc.LostResponseMode == "504" {
			return FaultLost504
		}
		return FaultLostReset
	}
	return FaultNone
}

// serve wraps an effect with what every provider endpoint does: latency,
// fault injection, Idempotency-Key semantics (when mutating), the hold
// gate, and the lost-response cases.
func (s *Simulator) serve(provider string, mutating bool, fx effect) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request_error", "body_unreadable", err.Error())
			return
		}
		fault, pc, lat, now, release := s.begin(provider, mutating)
		defer release()
		if !sleep(r.Context(), lat) {
			return
		}
		if s.failBefore(w, r, provider, fault, pc, now) {
			return
		}
		rec, abandon, answered := s.claimKey(w, r, provider, mutating, body)
		if answered {
			return
		}
		if !s.waitGate(r.Context(), provider) {
			abandon()
			return
		}
		ans, err := s.answer(r, provider, fault, fx, body)
		if err != nil {
			abandon()
			writeError(w, http.StatusInternalServerError, "api_error", "internal", err.Error())
			return
		}
		if rec != nil {
			s.mu.Lock()
			rec.done, rec.ans = true, ans
			s.mu.Unlock()
		}
		switch fault {
		case FaultLostReset:
			s.countFault(provider, fault)
			resetConn(w)
			return
		case FaultLost504:
			s.countFault(provider, fault)
			writeError(w, http.StatusGatewayTimeout, "api_error", "gateway_timeout", "gateway timeout")
			return
		}
		writeRaw(w, ans)
	}
}

// begin counts a request to provider and draws its fault and latency;
// release ends it.
func (s *Simulator) begin(provider string, mutating bool) (fault Fault, pc ProviderConfig, lat time.Duration, now time.Time, release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats[provider]
	st.Requests++
	if mutating {
		st.Mutating++
	}
	st.InFlight++
	st.MaxInFlight = max(st.MaxInFlight, st.InFlight)
	fault = s.draw(provider, mutating)
	pc = s.cfg.Providers[provider]
	release = func() {
		s.mu.Lock()
		// After a Reset the counters restarted from zero.
		if st := s.stats[provider]; st.InFlight > 0 {
			st.InFlight--
		}
		s.mu.Unlock()
	}
	return fault, pc, s.latency(pc.Latency), s.cfg.Now(), release
}

func (s *Simulator) countFault(provider string, f Fault) {
	s.mu.Lock()
	s.stats[provider].Faults[f]++
	s.mu.Unlock()
}

// failBefore answers the faults that strike before the provider does
// anything, and reports whether it answered.
func (s *Simulator) failBefore(w http.ResponseWriter, r *http.Request, provider string, fault Fault, pc ProviderConfig, now time.Time) bool {
	switch fault {
	case faultOutage, Fault503, Fault429, FaultReset, FaultTimeout:
		s.countFault(provider, fault)
	default:
		return false
	}
	switch fault {
	case faultOutage:
		if d := pc.Outage.Until.Sub(now); !pc.Outage.Down && d > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
		}
		writeError(w, http.StatusServiceUnavailable, "api_error", "outage", "provider outage")
	case Fault503:
		writeError(w, http.StatusServiceUnavailable, "api_error", "unavailable", "service unavailable")
	case Fault429:
		w.Header().Set("Retry-After", retryAfter(time.Duration(pc.RetryAfter)))
		writeError(w, http.StatusTooManyRequests, "rate_limit_error", "rate_limited", "too many requests")
	case FaultReset:
		resetConn(w)
	case FaultTimeout:
		select {
		case <-r.Context().Done():
		case <-s.ctx.Done():
		}
	}
	return true
}

// claimKey applies the Idempotency-Key of a mutating request: a replay of a
// finished request gets its answer again, a reused key with another body
// 422, a key in flight 409 (answered is then true). Otherwise it records
// the key as in flight; abandon forgets it when the request ends without
// an answer.
func (s *Simulator) claimKey(w http.ResponseWriter, r *http.Request, provider string, mutating bool, body []byte) (rec *idemRecord, abandon func(), answered bool) {
	key := r.Header.Get(providers.HeaderIdempotencyKey)
	if !mutating || key == "" {
		return nil, func() {}, false
	}
	scoped := provider + "\x00" + key
	fp := fingerprint(r, body)
	s.mu.Lock()
	prev, ok := s.state.idem[scoped]
	switch {
	case ok && prev.fingerprint != fp:
		s.mu.Unlock()
		writeError(w, http.StatusUnprocessableEntity, "idempotency_error", providers.CodeIdempotencyMismatch,
			"idempotency key already used with a different request")
		return nil, nil, true
	case ok && !prev.done:
		s.mu.Unlock()
		writeError(w, http.StatusConflict, "idempotency_error", providers.CodeIdempotencyInFlight,
			"a request with this idempotency key is in flight")
		return nil, nil, true
	case ok:
		s.stats[provider].Replays++
		s.state.prevented[provider]++
		ans := prev.ans
		s.mu.Unlock()
		w.Header().Set(providers.HeaderIdempotentReplayed, "true")
		writeRaw(w, ans)
		return nil, nil, true
	}
	rec = &idemRecord{fingerprint: fp}
	s.state.idem[scoped] = rec
	s.mu.Unlock()
	return rec, func() {
		s.mu.Lock()
		delete(s.state.idem, scoped)
		s.mu.Unlock()
	}, false
}

// answer is the provider's answer: a declined or invalid request when the
// fault says so, else the effect's.
func (s *Simulator) answer(r *http.Request, provider string, fault Fault, fx effect, body []byte) (answer, error) {
	switch fault {
	case Fault402:
		s.countFault(provider, fault)
		return errorAnswer(http.StatusPaymentRequired, "card_error", "card_declined", "the payment method was declined"), nil
	case Fault422:
		s.countFault(provider, fault)
		return errorAnswer(http.StatusUnprocessableEntity, "invalid_request_error", "validation_failed", "the request failed validation"), nil
	}
	s.mu.Lock()
	status, v := fx(r, body)
	s.mu.Unlock()
	b, err := json.Marshal(v)
	if err != nil {
		return answer{}, err
	}
	return answer{status: status, body: b}, nil
}

func (s *Simulator) waitGate(ctx context.Context, provider string) bool {
	s.mu.Lock()
	gate, ok := s.gates[provider]
	if ok {
		s.stats[provider].Held++
	}
	s.mu.Unlock()
	if !ok {
		return true
	}
	defer func() {
		s.mu.Lock()
		s.stats[provider].Held--
		s.mu.Unlock()
	}()
	select {
	case <-gate:
		return true
	case <-ctx.Done():
		return false
	case <-s.ctx.Done():
		return true
	}
}

// latency draws from a uniform distribution; call with s.mu held.
func (s *Simulator) latency(l Latency) time.Duration {
	lo, hi := time.Duration(l.Min), time.Duration(l.Max)
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)+1))
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func retryAfter(d time.Duration) string {
	secs := int(math.Ceil(d.Seconds()))
	if d > 0 && d < time.Second {
		// Retry-After has whole seconds; a sub-second value (for fast
		// tests) is sent as a decimal, which providers reads too.
		return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	}
	return strconv.Itoa(secs)
}

// fingerprint identifies a request for the idempotency check: the same key
// with another method, path or body is a different request.
func fingerprint(r *http.Request, body []byte) string {
	h := sha256.New()
	h.Write([]byte(r.Method + " " + r.URL.Path + "\n"))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// resetConn drops the connection without an answer: a TCP reset when the
// connection can be hijacked, else an aborted handler.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close with RST, as a crashed proxy would
	}
	_ = conn.Close()
}

type errorEnvelope struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func errorAnswer(status int, typ, code, msg string) answer {
	b, _ := json.Marshal(errorEnvelope{Error: errorDetail{Type: typ, Code: code, Message: msg}})
	return answer{status: status, body: b}
}

func writeError(w http.ResponseWriter, status int, typ, code, msg string) {
	writeRaw(w, errorAnswer(status, typ, code, msg))
}

func writeRaw(w http.ResponseWriter, a answer) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(a.body)))
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		writeError(w, http.StatusInternalServerError, "api_error", "internal", err.Error())
		return
	}
	writeRaw(w, answer{status: status, body: buf.Bytes()})
}

func invalid(msg string) (int, any) {
	return http.StatusBadRequest, errorEnvelope{Error: errorDetail{Type: "invalid_request_error", Code: "parameter_missing", Message: msg}}
}
