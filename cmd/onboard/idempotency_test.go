package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/onboard/onboard/httpapi"
	"github.com/onboard/onboard/internal/pgtest"
)

// TestIdempotencyRecordsExpire: the command role deletes an idempotency
// record once it has expired and counts it in its metrics; the key then
// names a new request (202) where it named another body's (422) before.
func TestIdempotencyRecordsExpire(t *testing.T) {
	url := pgtest.NewMigratedDatabase(t)
	pool := pgtest.NewPool(t, url, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := httpapi.ParseAPIKeys("client:shop:" + devClientKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := runConfig{addr: ln.Addr().String(), listener: ln, roles: []string{"command"}, databaseURL: url,
		apiKeys: keys, webhookSecret: devWebhookSecret, idempotencyPruneInterval: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()
	waitReady(t, base, false)

	signup := func(email string) (int, string) {
		t.Helper()
		status, body := call(t, "POST", base+"/v1/customers", devClientKey,
			fmt.Sprintf(`{"email":%q,"company":"Expiring","contact_name":"Tester","country":"SE","plan":"growth"}`, email),
			"Idempotency-Key", "expiring")
		var out struct{ ID string }
		_ = json.Unmarshal(body, &out)
		return status, out.ID
	}
	status, first := signup("first@example.com")
	if status != http.StatusAccepted {
		t.Fatalf("first signup: %d", status)
	}
	if status, _ := signup("second@example.com"); status != http.StatusUnprocessableEntity {
		t.Fatalf("the key with another body: %d, want 422", status)
	}

	if _, err := pool.Exec(context.Background(), `UPDATE idempotency SET expires_at = now() - interval '1 second' WHERE key = 'expiring'`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM idempotency WHERE key = 'expiring'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the expired record is still there after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, metrics := call(t, "GET", base+"/metrics", "", "")
	m := regexp.MustCompile(`(?m)^onboard_idempotency_records_deleted_total (\S+)$`).FindSubmatch(metrics)
	if m == nil {
		t.Error("metrics lack onboard_idempotency_records_deleted_total")
	} else if n, _ := strconv.ParseFloat(string(m[1]), 64); n != 1 {
		t.Errorf("onboard_idempotency_records_deleted_total %s, want 1", m[1])
	}

	status, second := signup("second@example.com")
	if status != http.StatusAccepted || second == "" || second == first {
		t.Errorf("the key after its record expired: %d, customer %q (first %q); want 202 and a new customer", status, second, first)
	}
}
