package messaging

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var update = flag.Bool("update", false, "rewrite deploy/nats/onboard.conf from ServerConfig")

// composeNATSConfig is the accounts file docker-compose's NATS reads.
var composeNATSConfig = filepath.Join("..", "deploy", "nats", "onboard.conf")

// TestServerConfigFile holds docker-compose's NATS configuration equal to
// ServerConfig, so that the embedded server (which parses ServerConfig)
// and compose grant the same permissions, and checks that nats-server
// accepts it with the passwords from the environment.
func TestServerConfigFile(t *testing.T) {
	want := ServerConfig(StreamConfig{}, RoleUsers())
	if *update {
		if err := os.WriteFile(composeNATSConfig, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(composeNATSConfig)
	if err != nil {
		t.Fatal(err)
	}
	if string(have) != want {
		t.Fatalf("%s differs from messaging.ServerConfig; run go test ./messaging -run TestServerConfigFile -update", composeNATSConfig)
	}
	for _, r := range Roles() {
		t.Setenv("NATS_"+strings.ToUpper(string(r))+"_PASSWORD", "pw-"+string(r))
	}
	opts := &server.Options{}
	if err := opts.ProcessConfigString(string(have)); err != nil {
		t.Fatalf("nats-server refuses %s: %v", composeNATSConfig, err)
	}
	if n := len(opts.Users); n != len(Roles()) {
		t.Fatalf("%d users, want one per role (%d)", n, len(Roles()))
	}
	for _, u := range opts.Users {
		if u.Password != "pw-"+u.Username {
			t.Errorf("user %s: password not taken from the environment", u.Username)
		}
	}
}

// TestEmbeddedRefusesWithoutCredentials: a client without credentials, or
// with a wrong password, is refused; the generated credentials connect.
func TestEmbeddedRefusesWithoutCredentials(t *testing.T) {
	srv, err := StartEmbedded(EmbeddedConfig{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	if nc, err := nats.Connect(srv.ClientURL(), nats.RetryOnFailedConnect(false)); err == nil {
		nc.Close()
		t.Fatal("a client without credentials connected")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("without credentials: %v, want an authorization violation", err)
	}
	bad := srv.Credentials(string(RoleWorker))
	bad.Password += "x"
	opts, err := bad.Options()
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := Connect(srv.ClientURL(), "wrong password", opts...); err == nil {
		nc.Close()
		t.Fatal("a client with a wrong password connected")
	}
	for _, user := range []string{string(RoleRelay), string(RoleWorker), DevUser} {
		opts, err := srv.Credentials(user).Options()
		if err != nil {
			t.Fatal(err)
		}
		nc, err := Connect(srv.ClientURL(), user, opts...)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		nc.Close()
	}
}

// TestWorkerCannotPublishEvents: the worker's credentials consume, but
// publishing an event, deleting the stream or a consumer is refused; the
// relay's publish is stored.
func TestWorkerCannotPublishEvents(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	if err := EnsureStreams(ctx, env.js, env.stream); err != nil {
		t.Fatal(err)
	}
	violations := make(chan error, 16)
	worker := env.connectAs(RoleWorker, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		violations <- err
	}))
	cfg := env.stream
	cfg.setDefaults()
	subject := cfg.EventSubject("customer", "customer.step_requested.v1", "customer-1", "billing")
	if err := worker.Publish(subject, []byte(`{"id":"forged"}`)); err != nil {
		t.Fatal(err)
	}
	if err := worker.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-violations:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("publish as worker: %v, want a permissions violation", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("publishing an event as worker was not refused")
	}
	wjs, err := jetstream.New(worker)
	if err != nil {
		t.Fatal(err)
	}
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 2*time.Second) }
	pctx, cancel := short()
	if _, err := wjs.Publish(pctx, subject, []byte(`{}`)); err == nil {
		t.Error("a JetStream publish as worker was acknowledged")
	}
	cancel()
	cc := jetstream.ConsumerConfig{Durable: "pm-billing", AckPolicy: jetstream.AckExplicitPolicy}
	if _, err := wjs.CreateOrUpdateConsumer(ctx, env.streamName(), cc); err != nil {
		t.Fatalf("the worker cannot create its consumer: %v", err)
	}
	dctx, cancel := short()
	if err := wjs.DeleteConsumer(dctx, env.streamName(), "pm-billing"); err == nil {
		t.Error("the worker deleted a consumer")
	}
	cancel()
	dctx, cancel = short()
	if err := wjs.DeleteStream(dctx, env.streamName()); err == nil {
		t.Error("the worker deleted the stream")
	}
	cancel()
	if n := env.streamMsgs(); n != 0 {
		t.Fatalf("the stream holds %d messages after the worker's publishes, want 0", n)
	}
	rjs, err := jetstream.New(env.connectAs(RoleRelay))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rjs.Publish(ctx, subject, []byte(`{}`)); err != nil {
		t.Fatalf("publish as relay: %v", err)
	}
	if n := env.streamMsgs(); n != 1 {
		t.Fatalf("the stream holds %d messages after the relay's publish, want 1", n)
	}
}

// connectAs connects to the test server with role's credentials.
func (env *testEnv) connectAs(role Role, opts ...nats.Option) *nats.Conn {
	env.t.Helper()
	auth, err := env.server.Credentials(string(role)).Options()
	if err != nil {
		env.t.Fatal(err)
	}
	// Refusals are expected here (a worker waiting for the relay to create
	// the streams); a test that looks for them passes its own handler.
	quiet := nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})
	nc, err := Connect(env.server.ClientURL(), env.t.Name()+"-"+string(role), append(append(auth, quiet), opts...)...)
	if err != nil {
		env.t.Fatal(err)
	}
	env.t.Cleanup(nc.Close)
	return nc
}

// streamMsgs counts the messages of the events stream.
func (env *testEnv) streamMsgs() uint64 {
	env.t.Helper()
	s, err := env.js.Stream(context.Background(), env.streamName())
	if err != nil {
		env.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		env.t.Fatal(err)
	}
	return info.State.Msgs
}
