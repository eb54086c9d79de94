package messaging

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Connect connects to the NATS server at url with the settings the relay
// and the router rely on: reconnect forever (also when the first attempt
// fails), quickly, and buffer publishes while reconnecting. name shows in
// the server's connection list; opts add the credentials (see
// ClientAuth.Options).
//
// A server that refuses the credentials fails the first attempt at once
// instead of being retried forever.
func Connect(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	base := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	nc, err := nats.Connect(url, append(append(base, nats.RetryOnFailedConnect(false)), opts...)...)
	if err != nil && !refused(err) {
		nc, err = nats.Connect(url, append(append(base, nats.RetryOnFailedConnect(true)), opts...)...)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to nats at %s: %w", url, err)
	}
	return nc, nil
}

// refused reports whether err is the server refusing the client's
// credentials, which no retry changes.
func refused(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired)
}
