package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/onboard/onboard/messaging"
)

// natsAuthFromEnv reads the NATS credentials of every command that
// connects: NATS_CREDS (a creds file), NATS_NKEY_SEED, NATS_USER and
// NATS_PASSWORD, and TLS with NATS_TLS_CA, NATS_TLS_CERT and NATS_TLS_KEY
// (files). The seed and the password may come from a file instead
// (NATS_NKEY_SEED_FILE, NATS_PASSWORD_FILE). It reports every problem at
// once, one line each, without the secrets.
func natsAuthFromEnv() (messaging.ClientAuth, error) {
	var errs []error
	get := func(name string) string {
		v, err := secretEnv(name)
		if err != nil {
			errs = append(errs, err)
		}
		return v
	}
	a := messaging.ClientAuth{
		CredsFile: os.Getenv("NATS_CREDS"),
		NKeySeed:  get("NATS_NKEY_SEED"),
		User:      os.Getenv("NATS_USER"),
		Password:  get("NATS_PASSWORD"),
		TLSCA:     os.Getenv("NATS_TLS_CA"),
		TLSCert:   os.Getenv("NATS_TLS_CERT"),
		TLSKey:    os.Getenv("NATS_TLS_KEY"),
	}
	if len(errs) == 0 {
		if err := a.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("NATS credentials: %s", strings.ReplaceAll(err.Error(), "\n", "; ")))
		}
	}
	return a, errors.Join(errs...)
}

// toolConnect connects a tool to NATS with the credentials of the
// environment, once (no retrying a first connect that fails: a wrong NATS_URL
// should end the command, not hang it).
func toolConnect(url, name string) (*nats.Conn, error) {
	auth, err := natsAuthFromEnv()
	if err != nil {
		return nil, err
	}
	opts, err := auth.Options()
	if err != nil {
		return nil, err
	}
	return messaging.Connect(url, name, append(opts, nats.RetryOnFailedConnect(false))...)
}

// writeDevCredentials writes the passwords of the embedded server's
// tools' users (operator, auditor) to files in dir, for NATS_PASSWORD_FILE,
// and returns dir.
func writeDevCredentials(srv *messaging.Server, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	for _, r := range []messaging.Role{messaging.RoleOperator, messaging.RoleAuditor} {
		path := filepath.Join(dir, string(r)+".password")
		if err := os.WriteFile(path, []byte(srv.Credentials(string(r)).Password+"\n"), 0o600); err != nil {
			return "", err
		}
	}
	return dir, nil
}
