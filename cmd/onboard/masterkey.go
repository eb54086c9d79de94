package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
)

// loadMasterKey returns the master key of the personal data from
// ONBOARD_MASTER_KEY (the base64 of 32 random bytes) or the file
// ONBOARD_MASTER_KEY_FILE holds it in, or nil when neither is set.
func loadMasterKey() ([]byte, error) {
	v, err := secretEnv("ONBOARD_MASTER_KEY")
	if err != nil || v == "" {
		return nil, err
	}
	k, err := parseMasterKey(v)
	if err != nil {
		return nil, fmt.Errorf("ONBOARD_MASTER_KEY: %w", err)
	}
	return k, nil
}

func parseMasterKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(k) != postgres.MasterKeySize {
		return nil, fmt.Errorf("want the base64 of %d random bytes (openssl rand -base64 32)", postgres.MasterKeySize)
	}
	return k, nil
}

func readMasterKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	k, err := parseMasterKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	return k, nil
}

// devMasterKey returns the master key kept in dataDir, generating it on
// first use.
func devMasterKey(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, "master.key")
	k, err := readMasterKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k = make([]byte, postgres.MasterKeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write the master key: %w", err)
	}
	return k, nil
}

// rolesWithPersonalData are the roles that encrypt or decrypt personal
// data.
var rolesWithPersonalData = []string{"command", "query", "worker", "projector"}

// keyStore returns the key store under cfg's master key, or nil (no
// encryption: reads show encrypted fields as [encrypted]) without one.
func keyStore(cfg runConfig, store *postgres.Store) (eventstore.KeyStore, error) {
	if cfg.masterKey == nil {
		return nil, nil
	}
	return postgres.NewKeyStore(store.Pool(), cfg.masterKey)
}
