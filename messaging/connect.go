package messaging

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Connect connects to the NATS server at url with the settings the relay
// and the router rely on: reconnect forever (also when the first attempt
// fails), quickly, and buffer publishes while reconnecting. name shows in
// the server's connection list.
func Connect(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	all := append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
	}, opts...)
	nc, err := nats.Connect(url, all...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats at %s: %w", url, err)
	}
	return nc, nil
}
