package messaging

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DevUser is the embedded server's user for a process that runs every
// role on one connection, as `onboard dev` does: it has the permissions
// of the relay, the worker and the operator (the console's re-drive) and
// no more.
const DevUser = "onboard"

// EmbeddedConfig configures an in-process NATS server with JetStream, as
// started by `onboard dev` and by tests when NATS_URL is not set.
type EmbeddedConfig struct {
	// DataDir is where JetStream keeps its files. It is required: a server
	// without a data directory would lose its streams on restart.
	DataDir string
	// Host is the listen address; the default is 127.0.0.1.
	Host string
	// Port is the client port; 0 picks a free port. A restarted server
	// keeps the port it got the first time, so clients reconnect.
	Port int
	// ServerName names the server (and its JetStream node); the default is
	// "onboard-embedded".
	ServerName string
	// SyncAlways makes JetStream fsync every write (sync_interval: always)
	// instead of every two minutes, so an acknowledged message survives a
	// power loss of a single node, at a throughput cost.
	SyncAlways bool
	// MaxStore caps JetStream file storage in bytes; 0 means the server's
	// default (a share of the free disk).
	MaxStore int64
	// StartTimeout bounds how long StartEmbedded waits for the server to
	// accept connections; the default is 10s.
	StartTimeout time.Duration
	// Stream is the stream layout the users' permissions are about (see
	// RolePermissions); the zero value is the default layout.
	Stream StreamConfig
	// Passwords are the users' passwords by user name, for nodes of one
	// cluster to share (see Server.Passwords); a user without one gets a
	// generated password.
	Passwords map[string]string
	// Cluster, when its Name is set, makes the server a node of a NATS
	// cluster with clustered JetStream (streams with Replicas up to the
	// number of nodes). Each node needs its own ServerName and DataDir.
	Cluster ClusterConfig
}

// ClusterConfig makes an embedded server a cluster node.
type ClusterConfig struct {
	// Name is the cluster's name, the same on every node.
	Name string
	// Port is the port the node listens on for the other nodes' routes;
	// 0 picks a free one, kept across restarts like the client port.
	Port int
	// Routes are the other nodes' route URLs (nats-route://host:port).
	Routes []string
}

func (c *EmbeddedConfig) setDefaults() {
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.ServerName == "" {
		c.ServerName = "onboard-embedded"
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 10 * time.Second
	}
}

// Validate reports every invalid field at once.
func (c EmbeddedConfig) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is required"))
	}
	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d out of range", c.Port))
	}
	if c.Cluster.Port < 0 || c.Cluster.Port > 65535 {
		errs = append(errs, fmt.Errorf("cluster port %d out of range", c.Cluster.Port))
	}
	for _, r := range c.Cluster.Routes {
		if _, err := url.Parse(r); err != nil {
			errs = append(errs, fmt.Errorf("cluster route %q: %w", r, err))
		}
	}
	return errors.Join(errs...)
}

// Server is an embedded NATS server. It is safe for concurrent use.
//
// It refuses clients without credentials: it has the users of
// ServerConfig, one per role with that role's permissions (the same
// configuration as docker-compose's NATS), and DevUser, each with a
// password generated when it starts. Credentials returns them; Connect
// connects as admin, for tests.
type Server struct {
	mu        sync.Mutex
	cfg       EmbeddedConfig
	ns        *server.Server
	passwords map[string]string
}

// StartEmbedded starts an embedded NATS server with JetStream enabled and
// waits until it accepts connections.
func StartEmbedded(cfg EmbeddedConfig) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("start embedded nats: %w", err)
	}
	s := &Server{cfg: cfg, passwords: map[string]string{}}
	for _, u := range s.users() {
		s.passwords[u.Name] = cfg.Passwords[u.Name]
		if s.passwords[u.Name] == "" {
			s.passwords[u.Name] = newPassword()
		}
	}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// users are the server's users, without their passwords.
func (s *Server) users() []ServerUser {
	users := RoleUsers()
	return append(users, ServerUser{Name: DevUser, Roles: []Role{RoleRelay, RoleWorker, RoleOperator}})
}

func newPassword() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// options are the server's options: the accounts and users of
// ServerConfig with the generated passwords, and the listener and
// JetStream settings of the configuration.
func (s *Server) options(port int) (*server.Options, error) {
	users := s.users()
	for i := range users {
		users[i].Password = s.passwords[users[i].Name]
	}
	opts := &server.Options{}
	if err := opts.ProcessConfigString(ServerConfig(s.cfg.Stream, users)); err != nil {
		return nil, fmt.Errorf("start embedded nats: accounts: %w", err)
	}
	opts.ServerName = s.cfg.ServerName
	opts.Host = s.cfg.Host
	opts.Port = port
	opts.JetStream = true
	opts.StoreDir = s.cfg.DataDir
	opts.SyncAlways = s.cfg.SyncAlways
	opts.JetStreamMaxStore = s.cfg.MaxStore
	opts.NoSigs = true
	opts.NoLog = true
	return opts, nil
}

// Credentials returns the credentials of user: a role's name (see Roles)
// or DevUser. An unknown user gets credentials the server refuses.
func (s *Server) Credentials(user string) ClientAuth {
	s.mu.Lock()
	defer s.mu.Unlock()
	pw := s.passwords[user]
	if pw == "" {
		pw = "unknown-user"
	}
	return ClientAuth{User: user, Password: pw}
}

// Passwords returns the users' passwords, for the other nodes of a
// cluster (EmbeddedConfig.Passwords).
func (s *Server) Passwords() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.passwords)
}

// Connect connects to the server as admin (see Connect for the other
// settings): for tests, which break streams and consumers on purpose.
func (s *Server) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	auth, err := s.Credentials(string(RoleAdmin)).Options()
	if err != nil {
		return nil, err
	}
	return Connect(s.ClientURL(), name, append(auth, opts...)...)
}

func (s *Server) start() error {
	port := s.cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts, err := s.options(port)
	if err != nil {
		return err
	}
	if c := s.cfg.Cluster; c.Name != "" {
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: s.cfg.Host, Port: c.Port}
		if c.Port == 0 {
			opts.Cluster.Port = server.RANDOM_PORT
		}
		for _, r := range c.Routes {
			u, _ := url.Parse(r) // checked by Validate
			opts.Routes = append(opts.Routes, u)
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("start embedded nats: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(s.cfg.StartTimeout) {
		ns.Shutdown()
		return fmt.Errorf("start embedded nats: %w", ErrServerNotReady)
	}
	// Remember the port picked, so that a restart comes back where clients
	// look for it.
	if addr, ok := ns.Addr().(*net.TCPAddr); ok {
		s.cfg.Port = addr.Port
	}
	if s.cfg.Cluster.Name != "" {
		if addr := ns.ClusterAddr(); addr != nil {
			s.cfg.Cluster.Port = addr.Port
		}
	}
	s.ns = ns
	return nil
}

// ClientURL returns the URL clients connect to.
func (s *Server) ClientURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "nats://" + net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
}

// ClusterURL returns the URL other nodes route to, or "" when the server
// is not a cluster node.
func (s *Server) ClusterURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Cluster.Name == "" {
		return ""
	}
	return "nats-route://" + net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Cluster.Port))
}

// Name returns the server's name, as JetStream reports stream and
// consumer leaders.
func (s *Server) Name() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.ServerName
}

// Shutdown stops the server and waits until it has stopped. It is a no-op
// on a stopped server.
func (s *Server) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns == nil {
		return
	}
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	s.ns = nil
}

// Start starts a stopped server again with the same port and data
// directory; JetStream recovers its streams from disk. It is a no-op on a
// running server.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns != nil {
		return nil
	}
	return s.start()
}

// Restart shuts the server down and starts it again.
func (s *Server) Restart() error {
	s.Shutdown()
	return s.Start()
}
