package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onboard/onboard/eventstore"
)

// loadSealKey returns the relay's seal key from ONBOARD_SEAL_KEY (the
// base64 of an ed25519 seed) or the file ONBOARD_SEAL_KEY_FILE holds it
// in, or nil when neither is set.
func loadSealKey() (ed25519.PrivateKey, error) {
	if v := os.Getenv("ONBOARD_SEAL_KEY"); v != "" {
		k, err := eventstore.ParseSealKey(v)
		if err != nil {
			return nil, fmt.Errorf("ONBOARD_SEAL_KEY: %w", err)
		}
		return k, nil
	}
	if p := os.Getenv("ONBOARD_SEAL_KEY_FILE"); p != "" {
		return readSealKey(p)
	}
	return nil, nil
}

func readSealKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("seal key file: %w", err)
	}
	k, err := eventstore.ParseSealKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("seal key file %s: %w", path, err)
	}
	return k, nil
}

// devSealKey returns the seal key kept in dataDir, generating it on first
// use.
func devSealKey(dataDir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dataDir, "seal.key")
	k, err := readSealKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	_, k, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(eventstore.EncodeSealKey(k)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write the seal key: %w", err)
	}
	return k, nil
}

// sealMetrics counts the relay's seals and restore alerts.
type sealMetrics struct {
	sealed   prometheus.Counter
	restores *prometheus.CounterVec
}

func newSealMetrics(reg prometheus.Registerer) *sealMetrics {
	m := &sealMetrics{
		sealed: prometheus.NewCounter(prometheus.CounterOpts{Name: "onboard_relay_seals_total",
			Help: "Seals of the event log written by the active relay."}),
		restores: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "onboard_relay_restore_alerts_total",
			Help: "Times the relay found the store behind the seals on NATS (store_behind: a restored backup), NATS behind the store (nats_behind) or the store on another cluster than recorded (store_moved)."},
			[]string{"direction"}),
	}
	reg.MustRegister(m.sealed, m.restores)
	return m
}

func (m *sealMetrics) SealWritten(int64)                { m.sealed.Inc() }
func (m *sealMetrics) RestoreDetected(direction string) { m.restores.WithLabelValues(direction).Inc() }
