package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/httpapi"
	"github.com/onboard/onboard/messaging"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/projections"
	"github.com/onboard/onboard/providers"
)

// runConfig is what the roles of one process need; `serve` reads it from
// flags and the environment, `dev` fills it for a laptop.
type runConfig struct {
	addr          string
	roles         []string
	databaseURL   string
	natsURL       string // empty: the worker reads the event store directly and no relay runs
	natsReplicas  int
	apiKeys       []httpapi.APIKey
	webhookSecret string
	providers     [5]providers.Config // kyc, payments, provisioning, crm, email
	process       process.Config
	// public routes mounted beside the authenticated API (the simulator in
	// dev); nil for none.
	public func(mux *http.ServeMux)
	// listener, when set, is where the HTTP server listens instead of addr.
	listener net.Listener
	// tracer records spans; nil means no tracing.
	tracer trace.TracerProvider
	// inboxRetention is how long the worker keeps its consumers' inbox
	// rows; 0 means defaultInboxRetention.
	inboxRetention time.Duration
	// projectorPace is the least time between two reads of a caught-up
	// projector; nil means defaultProjectorPace.
	projectorPace *time.Duration
	// sealKey signs the relay's seals of the log; nil reads
	// ONBOARD_SEAL_KEY or ONBOARD_SEAL_KEY_FILE, and without either the
	// log is not sealed.
	sealKey ed25519.PrivateKey
	// idempotencyPruneInterval is how often the command role deletes
	// expired idempotency records; 0 means hourly.
	idempotencyPruneInterval time.Duration
}

// defaultInboxRetention outlasts any redelivery or re-publish of an event
// (a relay outage of days plus the stream's duplicate window).
const defaultInboxRetention = 7 * 24 * time.Hour

// defaultProjectorPace is the least time between two reads of a
// caught-up projector. Under load a customer's journey then costs its read
// model row a few writes instead of one per event, and each projection one
// transaction per pace, for up to that much more lag.
const defaultProjectorPace = 100 * time.Millisecond

func (c runConfig) has(role string) bool { return slices.Contains(c.roles, role) }

// run runs the configured roles until ctx is done or one of them fails,
// then stops the others and returns the first error (nil on a clean stop).
func run(ctx context.Context, cfg runConfig, log *slog.Logger) error {
	store, err := openEventStore(ctx, cfg)
	if err != nil {
		return err
	}
	pool := store.Pool()
	defer pool.Close()
	defer store.Close()
	m := newMetrics()
	if cfg.tracer == nil {
		cfg.tracer = noop.NewTracerProvider()
	}
	tracer := cfg.tracer.Tracer("github.com/onboard/onboard")
	// The worker appends most of every customer's events: where it runs,
	// the commands decide on what they remember before reading.
	cmds, err := commands.New(commands.Config{Store: store, Observe: m.observeCommand,
		TrustHistories: slices.Contains(cfg.roles, "worker")})
	if err != nil {
		return err
	}
	proj, err := readModels(cfg, store, m, log)
	if err != nil {
		return err
	}
	nc, err := connectNATS(cfg)
	if err != nil {
		return err
	}
	if nc != nil {
		defer nc.Close()
	}
	// Each event goes out with the process manager it is for (RouteOf) as
	// the last subject token: each manager's consumer gets its own events
	// only.
	stream := messaging.StreamConfig{Replicas: max(cfg.natsReplicas, 1), Route: process.RouteOf}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	roles := newRoleGroup(ctx)
	var checks []httpapi.ReadinessCheck
	if cfg.has("relay") {
		seal, err := relaySeal(cfg, store, m, log)
		if err != nil {
			return err
		}
		relay, err := messaging.NewRelay(messaging.RelayConfig{Store: store, Pool: pool, Conn: nc, Stream: stream,
			NotifyChannel: "onboard_events", Logger: log, Metrics: m, Seal: seal})
		if err != nil {
			return err
		}
		roles.start("relay", relay.Run)
		// A restored store (or seals NATS lost) is told in /readyz.
		checks = append(checks, httpapi.ReadinessCheck{Name: "seals", Check: func(context.Context) error {
			if a := relay.Alert(); a != "" {
				return errors.New(a)
			}
			return nil
		}})
	}
	if cfg.has("projector") {
		roles.start("projector", proj.Run)
	}
	if cfg.has("command") {
		// The role that writes the idempotency records deletes them once
		// expired; lookups ignore them from then on anyway.
		every := cfg.idempotencyPruneInterval
		if every <= 0 {
			every = time.Hour
		}
		roles.start("idempotency-pruner", func(ctx context.Context) error {
			return pruneEvery(ctx, "idempotency", every, store.DeleteExpiredIdempotency, m.idempotencyDeleted, log)
		})
	}
	if cfg.has("worker") {
		if err := startWorker(ctx, cfg, store, cmds, nc, stream, m, log, tracer, roles.start); err != nil {
			return err
		}
	}

	root, err := httpHandler(cfg, store, cmds, proj, nc, m, log, tracer, checks)
	if err != nil {
		return err
	}
	ln := cfg.listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.addr); err != nil {
			return err
		}
	}
	log.Info("onboard running", "addr", ln.Addr().String(), "roles", cfg.roles, "nats", cfg.natsURL != "")
	roles.start("http", func(ctx context.Context) error {
		return httpapi.Serve(ctx, httpapi.NewServer(cfg.addr, root), ln, 10*time.Second)
	})
	return roles.wait(cancel)
}

// relaySeal is the relay's sealing of the log, or nil without a seal key.
func relaySeal(cfg runConfig, store *postgres.Store, m *metrics, log *slog.Logger) (*messaging.SealConfig, error) {
	key := cfg.sealKey
	if key == nil {
		var err error
		if key, err = loadSealKey(); err != nil {
			return nil, err
		}
	}
	if key == nil {
		log.Warn("relay: no ONBOARD_SEAL_KEY or ONBOARD_SEAL_KEY_FILE: the log is not sealed")
		return nil, nil
	}
	return &messaging.SealConfig{Store: store, Key: key, Metrics: newSealMetrics(m.reg)}, nil
}

// openEventStore opens the process's pool, checks the schema's version and
// opens the event store on the pool. The caller closes the store, then its
// pool.
func openEventStore(ctx context.Context, cfg runConfig) (*postgres.Store, error) {
	pool, err := openPool(ctx, cfg.databaseURL, poolConns(cfg.roles, cfg.natsURL != ""))
	if err != nil {
		return nil, err
	}
	if err := checkSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	store, err := postgres.New(pool, postgres.Config{})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return store, nil
}

// readModels returns the read models for the query and projector
// roles, and nil when the process runs neither.
func readModels(cfg runConfig, store *postgres.Store, m *metrics, log *slog.Logger) (*projections.Projections, error) {
	if !cfg.has("query") && !cfg.has("projector") {
		return nil, nil
	}
	// Projectors are off the pipeline's critical path: paced reads give
	// them fewer, larger batches under load, for up to the pace more lag.
	pace := defaultProjectorPace
	if cfg.projectorPace != nil {
		pace = *cfg.projectorPace
	}
	proj, err := projections.New(projections.Config{Pool: store.Pool(), Source: store.Paced(pace), OnError: func(name string, err error) {
		log.Error("projection batch failed; retrying", "projection", name, "err", err)
	}})
	if err != nil {
		return nil, err
	}
	m.reg.MustRegister(newReadModelCollector(proj))
	return proj, nil
}

// connectNATS connects the relay and the worker to NATS; it returns nil
// when the process runs neither or runs without NATS.
func connectNATS(cfg runConfig) (*nats.Conn, error) {
	if cfg.natsURL == "" || (!cfg.has("relay") && !cfg.has("worker")) {
		return nil, nil
	}
	nc, err := messaging.Connect(cfg.natsURL, "onboard-"+fmt.Sprint(cfg.roles))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", cfg.natsURL, err)
	}
	return nc, nil
}

// httpHandler is the process's HTTP surface: the OpenAPI document, the
// metrics, the health checks and the APIs of its roles behind the API
// keys, and the public routes beside them.
func httpHandler(cfg runConfig, store *postgres.Store, cmds *commands.Handler, proj *projections.Projections, nc *nats.Conn,
	m *metrics, log *slog.Logger, tracer trace.Tracer, checks []httpapi.ReadinessCheck) (http.Handler, error) {
	mux := http.NewServeMux()
	httpapi.RegisterOpenAPI(mux)
	mux.Handle("GET /metrics", m.handler())
	httpapi.Health{Checks: append(readinessChecks(store.Pool(), nc), checks...)}.Register(mux)
	if cfg.has("command") {
		api, err := httpapi.NewCommandAPI(httpapi.CommandConfig{Commands: cmds, Store: store, WebhookSecret: cfg.webhookSecret, Logger: log, Tracer: tracer})
		if err != nil {
			return nil, err
		}
		api.Register(mux)
	}
	if cfg.has("query") {
		httpapi.NewQueryAPI(httpapi.QueryConfig{Reads: proj, Events: store, Logger: log}).Register(mux)
		httpapi.RegisterConsole(mux)
	}
	auth := httpapi.NewAuthenticator(httpapi.AuthConfig{Keys: cfg.apiKeys})
	root := http.NewServeMux()
	root.Handle("/", auth.Middleware(mux))
	if cfg.public != nil {
		cfg.public(root)
	}
	return root, nil
}

// readinessChecks are Postgres and, when the process uses it, NATS.
func readinessChecks(pool *pgxpool.Pool, nc *nats.Conn) []httpapi.ReadinessCheck {
	checks := []httpapi.ReadinessCheck{{Name: "postgres", Check: func(ctx context.Context) error { return pool.Ping(ctx) }}}
	if nc != nil {
		checks = append(checks, httpapi.ReadinessCheck{Name: "nats", Check: func(context.Context) error {
			if s := nc.Status(); s != nats.CONNECTED {
				return fmt.Errorf("nats connection is %s", s)
			}
			return nil
		}})
	}
	return checks
}

// roleGroup runs the roles of one process, each in its own goroutine,
// on the group's context.
type roleGroup struct {
	ctx     context.Context
	results chan roleResult
	running int
}

type roleResult struct {
	role string
	err  error
}

func newRoleGroup(ctx context.Context) *roleGroup {
	return &roleGroup{ctx: ctx, results: make(chan roleResult, 8)}
}

// start runs role's f until the group's context is done.
func (g *roleGroup) start(role string, f func(context.Context) error) {
	g.running++
	go func() { g.results <- roleResult{role, f(g.ctx)} }()
}

// wait returns when the first role stops, after cancel has stopped the
// others: that role's error, or nil when it stopped cleanly or was
// cancelled.
func (g *roleGroup) wait(cancel context.CancelFunc) error {
	first := <-g.results
	cancel()
	for range g.running - 1 {
		<-g.results
	}
	if first.err != nil && !errors.Is(first.err, context.Canceled) {
		return fmt.Errorf("%s: %w", first.role, first.err)
	}
	return nil
}

// startWorker starts the process managers and their timers. With NATS, each
// manager is a durable JetStream consumer; without, one catch-up
// subscription of the event store feeds them all.
func startWorker(ctx context.Context, cfg runConfig, store *postgres.Store, cmds *commands.Handler, nc *nats.Conn,
	stream messaging.StreamConfig, m *metrics, log *slog.Logger, tracer trace.Tracer, start func(string, func(context.Context) error)) error {
	em, err := providers.NewMetrics(m.reg)
	if err != nil {
		return err
	}
	p := cfg.providers
	for i := range p {
		p[i].Policy.Hooks = em.Hooks()
	}
	clients, err := providers.NewClients(p[0], p[1], p[2], p[3], p[4])
	if err != nil {
		return err
	}
	timers := process.NewTimers(store.Pool())
	pc := cfg.process
	pc.Commands, pc.Providers, pc.Timers, pc.Logger = cmds, process.ProvidersOf(clients), timers, log
	pc.OnPause, pc.OnRetry, pc.Tracer = m.onPause, m.onRetry, tracer
	pm, err := process.New(pc)
	if err != nil {
		return err
	}
	start("timers", func(ctx context.Context) error { return pm.RunTimers(ctx, 100*time.Millisecond) })
	if nc == nil {
		start("worker", func(ctx context.Context) error {
			return pm.Run(ctx, process.RunConfig{Name: "process-managers", Pool: store.Pool(), Source: store, Workers: 16})
		})
		return nil
	}
	// The process managers' effects are calls and appends, none in the
	// delivery's transaction: they run WithoutTx, so a delivery holds no
	// connection while it works, and the router's inbox statements get a
	// pool of their own.
	routerPool, err := openPool(ctx, cfg.databaseURL, routerPoolConns)
	if err != nil {
		return err
	}
	// A process manager's reaction never becomes a dead letter: its
	// errors are the database or a shutdown being away, never the event
	// (an undecodable event is skipped), and every restart of the worker
	// or of NATS hands back held messages as one more delivery. Giving up
	// would lose an effect, so deliveries go on, a few seconds apart.
	router, err := messaging.NewRouter(ctx, messaging.RouterConfig{Pool: routerPool, Conn: nc, Stream: stream, Logger: log, Metrics: m,
		MaxAckPending: routerMaxAckPending, MaxDeliver: pmMaxDeliver, AckWait: routerAckWait, HandlerTimeout: pmHandlerTimeout,
		BackOff: []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second}})
	if err != nil {
		routerPool.Close()
		return err
	}
	handle := func(ctx context.Context, _ pgx.Tx, e eventstore.Envelope) error { return pm.Handle(ctx, e) }
	for _, name := range process.Managers() {
		if err := router.AddHandler(ctx, pmHandler(name), handle, messaging.WithoutTx(), messaging.WithRoute(name)); err != nil {
			return err
		}
	}
	start("worker", func(ctx context.Context) error {
		defer routerPool.Close()
		return router.Run(ctx)
	})
	retention := cfg.inboxRetention
	if retention <= 0 {
		retention = defaultInboxRetention
	}
	start("inbox-pruner", func(ctx context.Context) error {
		return pruneEvery(ctx, "messaging_inbox", time.Hour, func(ctx context.Context, limit int) (int64, error) {
			return messaging.PruneInbox(ctx, store.Pool(), retention, limit)
		}, nil, log)
	})
	return nil
}

// poolConns is the pool for the roles of one process: the connections
// its roles hold for as long as they run (heldConns), plus
// workingConns for the statements of the commands, timers, queries and
// reads. pool_max_conns in DATABASE_URL raises it.
func poolConns(roles []string, nats bool) int32 {
	return heldConns(roles, nats) + workingConns
}

// workingConns bounds the statements one process runs at once. More is
// slower, not faster: the server's processes contend for its cores and
// every group commit wakes each backend that waits on it (the measurements
// are in docs/benchmarks.md). A statement beyond it waits for a connection.
const workingConns = 8

// heldConns are the connections the roles hold while they run: the
// relay's advisory-lock session and its LISTEN, a LISTEN per projection,
// and the worker's LISTEN when it reads the event store itself (no NATS).
func heldConns(roles []string, nats bool) int32 {
	var n int32
	for _, r := range roles {
		switch {
		case r == "relay":
			n += 2
		case r == "projector":
			n += int32(len(projections.Names()))
		case r == "worker" && !nats:
			n++
		}
	}
	return n
}

// routerPoolConns bounds the router's inbox statements at once;
// routerMaxAckPending is the deliveries in flight per process manager (six
// of them): no more than the default bulkhead of the manager's provider,
// so that a burst waits in JetStream instead of failing attempts with
// "bulkhead full" and retrying them later.
const (
	routerPoolConns     = 16
	routerMaxAckPending = 16
	// pmMaxDeliver is, at 5 s apart, days of retries.
	pmMaxDeliver = 100000
	// routerAckWait is how soon a delivery lost on its way (with a NATS
	// node or a worker that died) is delivered again; a running handler
	// reports progress meanwhile, so it does not bound the handler.
	routerAckWait = 5 * time.Second
	// pmHandlerTimeout bounds a process manager's reaction: a provider
	// call's three attempts of up to 5 s each and the waits between them.
	pmHandlerTimeout = 20 * time.Second
)

func openPool(ctx context.Context, url string, minConns int32) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	pc.MaxConns = max(pc.MaxConns, minConns)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to Postgres: %w", err)
	}
	return pool, nil
}
