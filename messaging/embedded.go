package messaging

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

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
type Server struct {
	mu  sync.Mutex
	cfg EmbeddedConfig
	ns  *server.Server
}

// StartEmbedded starts an embedded NATS server with JetStream enabled and
// waits until it accepts connections.
func StartEmbedded(cfg EmbeddedConfig) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("start embedded nats: %w", err)
	}
	s := &Server{cfg: cfg}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	port := s.cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:        s.cfg.ServerName,
		Host:              s.cfg.Host,
		Port:              port,
		JetStream:         true,
		StoreDir:          s.cfg.DataDir,
		SyncAlways:        s.cfg.SyncAlways,
		JetStreamMaxStore: s.cfg.MaxStore,
		NoSigs:            true,
		NoLog:             true,
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
