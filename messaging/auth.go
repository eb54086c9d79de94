package messaging

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// ClientAuth is how a client proves who it is to NATS, and whom it trusts:
// at most one of a creds file, an nkey seed or a user and password, and,
// for TLS, a CA and a client certificate. The zero value connects without
// credentials (which the servers of `onboard dev`, the tests and
// docker-compose refuse).
type ClientAuth struct {
	// CredsFile is a NATS creds file (a user JWT and its nkey seed).
	CredsFile string
	// NKeySeed is a user nkey seed ("SU..."); the server knows its public
	// key.
	NKeySeed string
	// User and Password authenticate by name.
	User, Password string
	// TLSCA is a PEM file of the CAs that sign the server's certificate,
	// instead of the system's.
	TLSCA string
	// TLSCert and TLSKey are PEM files of a client certificate and its key,
	// for a server that verifies clients.
	TLSCert, TLSKey string
}

// Validate reports every inconsistent field at once; it does not read the
// files.
func (a ClientAuth) Validate() error {
	var errs []error
	n := 0
	for _, set := range []bool{a.CredsFile != "", a.NKeySeed != "", a.User != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		errs = append(errs, errors.New("set one of a creds file, an nkey seed or a user"))
	}
	if a.Password != "" && a.User == "" {
		errs = append(errs, errors.New("a password needs a user"))
	}
	if a.User != "" && a.Password == "" {
		errs = append(errs, errors.New("a user needs a password"))
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		errs = append(errs, errors.New("a client certificate and its key go together"))
	}
	if a.NKeySeed != "" {
		if _, err := nkeys.FromSeed([]byte(a.NKeySeed)); err != nil {
			errs = append(errs, fmt.Errorf("nkey seed: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Options returns the nats.Options that present these credentials, for
// Connect.
func (a ClientAuth) Options() ([]nats.Option, error) {
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("nats credentials: %w", err)
	}
	var opts []nats.Option
	switch {
	case a.CredsFile != "":
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	case a.NKeySeed != "":
		kp, err := nkeys.FromSeed([]byte(a.NKeySeed))
		if err != nil {
			return nil, fmt.Errorf("nats credentials: nkey seed: %w", err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("nats credentials: nkey seed: %w", err)
		}
		opts = append(opts, nats.Nkey(pub, kp.Sign))
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	if a.TLSCA != "" {
		opts = append(opts, nats.RootCAs(a.TLSCA))
	}
	if a.TLSCert != "" {
		opts = append(opts, nats.ClientCert(a.TLSCert, a.TLSKey))
	}
	return opts, nil
}

// Env returns the environment variables that carry these credentials to
// `onboard` (NATS_USER and NATS_PASSWORD and so on), for a test or a tool
// that starts it as a process.
func (a ClientAuth) Env() []string {
	var env []string
	for _, kv := range [][2]string{
		{"NATS_CREDS", a.CredsFile}, {"NATS_NKEY_SEED", a.NKeySeed}, {"NATS_USER", a.User},
		{"NATS_PASSWORD", a.Password}, {"NATS_TLS_CA", a.TLSCA}, {"NATS_TLS_CERT", a.TLSCert}, {"NATS_TLS_KEY", a.TLSKey},
	} {
		if kv[1] != "" {
			env = append(env, kv[0]+"="+kv[1])
		}
	}
	return env
}
