package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/onboard/onboard/providers"
)

// scheduleVerdict records the verdict of c, visible to GetCheck after
// delay, and delivers its webhook then. Call with s.mu held.
func (s *Simulator) scheduleVerdict(c *check, status providers.VerdictStatus, reason string, delay time.Duration) {
	c.status, c.reason = string(status), reason
	c.verdictAt = s.verdictTime(delay)
	s.webhooks.Scheduled++
	if s.closed {
		return
	}
	ev := providers.WebhookEvent{
		ID:         s.state.nextID("evt"),
		Type:       providers.WebhookTypeCheckCompleted,
		CheckID:    c.id,
		CustomerID: c.customerID,
		Status:     status,
		Reason:     reason,
	}
	k := s.cfg.KYC
	dup := k.DuplicateRate > 0 && s.rng.Float64() < k.DuplicateRate
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if !sleep(s.ctx, delay) {
			return
		}
		if !s.deliver(ev, k) {
			return
		}
		if dup {
			s.mu.Lock()
			s.webhooks.Duplicated++
			s.mu.Unlock()
			s.deliver(ev, k)
		}
	}()
}

// deliver posts one webhook, retrying with backoff while the callback
// fails, as providers do. It reports whether it was delivered.
func (s *Simulator) deliver(ev providers.WebhookEvent, k KYCConfig) bool {
	if k.CallbackURL == "" {
		return false
	}
	s.mu.Lock()
	now, hc := s.cfg.Now, s.cfg.WebhookClient
	s.mu.Unlock()
	ev.Created = now().Unix()
	body, err := json.Marshal(ev)
	if err != nil {
		return false
	}
	waits := &backoff.ExponentialBackOff{InitialInterval: 50 * time.Millisecond, Multiplier: 2, MaxInterval: time.Minute}
	waits.Reset()
	for range k.DeliveryAttempts {
		if s.post(k.CallbackURL, k.WebhookSecret, now(), body, hc) {
			s.mu.Lock()
			s.webhooks.Delivered++
			s.mu.Unlock()
			return true
		}
		if !sleep(s.ctx, waits.NextBackOff()) {
			return false
		}
	}
	s.mu.Lock()
	s.webhooks.Failed++
	s.mu.Unlock()
	return false
}

// maxWebhookAnswer is as much of a webhook's answer as is read to keep its
// connection; a longer one is cut and its connection closed.
const maxWebhookAnswer = 64 << 10

func (s *Simulator) post(url, secret string, at time.Time, body []byte, hc *http.Client) bool {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(providers.HeaderWebhookSignature, providers.SignWebhook(secret, at, body))
	res, err := hc.Do(req)
	if err != nil {
		return false
	}
	// Read the answer to its end: a body closed unread closes the
	// connection, and every verdict would open a new one.
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxWebhookAnswer))
	_ = res.Body.Close()
	return res.StatusCode >= 200 && res.StatusCode < 300
}
