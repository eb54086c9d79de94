package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

// TestNATSAuthFromEnv reads the NATS credentials from the environment and
// from *_FILE, and names what is wrong without printing a secret.
func TestNATSAuthFromEnv(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		want string // an error that says this, or "" for none
	}{
		{"nothing", nil, ""},
		{"user and password", map[string]string{"NATS_USER": "worker", "NATS_PASSWORD": "pw"}, ""},
		{"password from a file", map[string]string{"NATS_USER": "worker", "NATS_PASSWORD_FILE": pwFile}, ""},
		{"nkey seed", map[string]string{"NATS_NKEY_SEED": string(seed)}, ""},
		{"tls", map[string]string{"NATS_TLS_CA": "ca.pem", "NATS_TLS_CERT": "c.pem", "NATS_TLS_KEY": "k.pem"}, ""},
		{"both password and file", map[string]string{"NATS_USER": "w", "NATS_PASSWORD": "secret-one", "NATS_PASSWORD_FILE": pwFile},
			"NATS_PASSWORD and NATS_PASSWORD_FILE are both set"},
		{"missing file", map[string]string{"NATS_USER": "w", "NATS_PASSWORD_FILE": filepath.Join(dir, "none")}, "NATS_PASSWORD_FILE:"},
		{"user without password", map[string]string{"NATS_USER": "w"}, "a user needs a password"},
		{"creds and user", map[string]string{"NATS_CREDS": "x.creds", "NATS_USER": "w", "NATS_PASSWORD": "secret-one"},
			"set one of a creds file, an nkey seed or a user"},
		{"cert without key", map[string]string{"NATS_TLS_CERT": "c.pem"}, "a client certificate and its key go together"},
		{"bad seed", map[string]string{"NATS_NKEY_SEED": "SUsecret-seed-garbage"}, "nkey seed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"NATS_CREDS", "NATS_NKEY_SEED", "NATS_NKEY_SEED_FILE", "NATS_USER", "NATS_PASSWORD",
				"NATS_PASSWORD_FILE", "NATS_TLS_CA", "NATS_TLS_CERT", "NATS_TLS_KEY"} {
				t.Setenv(k, tt.env[k])
			}
			auth, err := natsAuthFromEnv()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := auth.Options(); err != nil {
					t.Fatal(err)
				}
				if tt.env["NATS_PASSWORD_FILE"] != "" && auth.Password != "from-a-file" {
					t.Errorf("password %q, want the file's without its newline", auth.Password)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one that says %q", err, tt.want)
			}
			for _, secret := range []string{"secret-one", "secret-seed-garbage", "from-a-file"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows a secret: %v", err)
				}
			}
		})
	}
}
