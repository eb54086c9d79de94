package providers

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// HeaderWebhookSignature carries the signature of a KYC webhook, in the
// form "t=<unix seconds>,v1=<hex hmac-sha256>"; several v1 entries may be
// present while a secret is being rotated.
const HeaderWebhookSignature = "Onboard-Signature"

// WebhookTypeCheckCompleted is the type of the webhook that carries a KYC
// verdict.
const WebhookTypeCheckCompleted = "check.completed"

// Webhook verification errors, for errors.Is. The API answers 400 to a
// malformed or badly signed webhook and to a stale one, and 200 to a replay
// (the provider must stop resending what was already handled).
var (
	ErrWebhookMalformed = errors.New("malformed webhook signature header")
	ErrWebhookSignature = errors.New("webhook signature mismatch")
	ErrWebhookStale     = errors.New("webhook timestamp outside tolerance")
)

// WebhookEvent is the body of a KYC webhook. ID identifies the delivery
// event, so that a replayed webhook can be recognised; CheckID and
// CustomerID identify the check.
type WebhookEvent struct {
	ID         string        `json:"id"`
	Type       string        `json:"type"`
	Created    int64         `json:"created"`
	CheckID    string        `json:"check_id"`
	CustomerID string        `json:"customer_id"`
	Status     VerdictStatus `json:"status"`
	Reason     string        `json:"reason,omitempty"`
}

// ParseWebhook decodes a webhook body. Verify it first: only the signature
// says the body is the provider's.
func ParseWebhook(body []byte) (WebhookEvent, error) {
	var ev WebhookEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		return WebhookEvent{}, fmt.Errorf("decode webhook: %w", err)
	}
	if ev.ID == "" || ev.CheckID == "" {
		return WebhookEvent{}, errors.New("decode webhook: id and check_id are required")
	}
	return ev, nil
}

// SignWebhook returns the Onboard-Signature header value for body sent at
// timestamp: HMAC-SHA256 with secret over "<unix seconds>.<body>".
func SignWebhook(secret string, timestamp time.Time, body []byte) string {
	ts := strconv.FormatInt(timestamp.Unix(), 10)
	return "t=" + ts + ",v1=" + webhookMAC(secret, ts, body)
}

func webhookMAC(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// VerifyWebhook checks the Onboard-Signature header of a webhook body: one
// v1 signature must match secret, and the timestamp must be within
// tolerance of now either way (which bounds how long a captured webhook can
// be replayed; the API's durable guard against replays is the command's
// idempotency, keyed by the webhook id). The
// signature is checked first, so a stale error means the provider really
// sent it, late. Errors wrap ErrWebhookMalformed, ErrWebhookSignature or
// ErrWebhookStale.
func VerifyWebhook(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: %q", ErrWebhookMalformed, part)
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	if ts == "" || len(sigs) == 0 {
		return fmt.Errorf("%w: t and v1 are required", ErrWebhookMalformed)
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrWebhookMalformed, ts)
	}
	want := []byte(webhookMAC(secret, ts, body))
	matched := false
	for _, s := range sigs {
		if hmac.Equal([]byte(s), want) {
			matched = true
		}
	}
	if !matched {
		return ErrWebhookSignature
	}
	age := now.Sub(time.Unix(unix, 0))
	if age > tolerance || age < -tolerance {
		return fmt.Errorf("%w: signed %s ago, tolerance %s", ErrWebhookStale, age, tolerance)
	}
	return nil
}
