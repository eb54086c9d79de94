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
	addr         string
	roles        []string
	databaseURL  string
	natsURL      string // empty: the worker reads the event store directly and no relay runs
	natsReplicas int
	natsAuth     messaging.ClientAuth // the credentials the relay and the worker connect with
	apiKeys      []httpapi.APIKey
	// apiRate and apiBurst limit each API key's requests; 0 means
	// httpapi's defaults.
	apiRate       float64
	apiBurst      int
	webhookSecret string
	providers     [5]providers.Config // kyc, payments, provisioning, crm, email
	process       process.Config
	// outages tunes the resuming of customers after a provider's outage
	// (ONBOARD_RESUME_RATE, ONBOARD_OUTAGE_PROBE_EVERY).
	outages process.OutageConfig
	// public routes mounted beside the authenticated API (the simulator in
	// dev); nil for none.
	public func(mux *http.ServeMux)
	// listener, when set, is where the HTTP server listens instead of addr.
	listener net.Listener
	// metricsAddr, when set, is where /metrics is served instead of
	// beside the API (ONBOARD_METRICS_ADDR); metricsListener, when set,
	// is where it listens instead.
	metricsAddr     string
	metricsListener net.Listener
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
	// masterKey wraps the customers' data keys (ONBOARD_MASTER_KEY); nil
	// only for roles that touch no personal data.
	masterKey []byte
	// idempotencyPruneInterval is how often the command role deletes
	// expired idempotency records; 0 means hourly.
	idempotencyPruneInterval time.Duration
	// bulkRate is the most commands a second of a bulk operation; 0 means
	// defaultBulkRate.
	bulkRate float64
	// stuckDeadlines override the stuck detector's derived deadlines
	// ("verifying=40m,provisioning/billing=10m").
	stuckDeadlines string
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
	keys, err := keyStore(cfg, store)
	if err != nil {
		return err
	}
	cmds, err := commands.New(commands.Config{Store: store, Observe: m.observeCommand,
		TrustHistories: slices.Contains(cfg.roles, "worker"), Keys: keys})
	if err != nil {
		return err
	}
	proj, err := readModels(cfg, store, keys, m, log)
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
		check, err := startRelay(cfg, store, nc, stream, m, log, roles.start)
		if err != nil {
			return err
		}
		checks = append(checks, check)
	}
	if cfg.has("projector") {
		roles.start("projector", proj.Run)
	}
	var tools *operatorTools
	if cfg.has("command") || cfg.has("query") {
		if tools, err = newOperatorTools(ctx, cfg, store, keys, cmds, proj, nc, log); err != nil {
			return err
		}
	}
	if cfg.has("command") {
		startCommandChores(cfg, store, tools, m, log, roles.start)
	}
	if cfg.has("worker") {
		if err := startWorker(ctx, cfg, store, cmds, keys, nc, stream, m, log, tracer, roles.start); err != nil {
			return err
		}
	}

	root, err := httpHandler(cfg, store, cmds, keys, proj, tools, nc, m, log, tracer, checks)
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
	if err := serveMetrics(cfg, m, log, roles.start); err != nil {
		return err
	}
	return roles.wait(cancel)
}

// startRelay starts the relay role and returns its readiness check. A
// restored or moved store (or seals NATS lost) is told in /readyz's
// detail; the relay goes on in a new epoch, so the check is advisory:
// taking the process out of service would turn an audit alert into an
// outage.
func startRelay(cfg runConfig, store *postgres.Store, nc *nats.Conn, stream messaging.StreamConfig, m *metrics, log *slog.Logger,
	start func(string, func(context.Context) error)) (httpapi.ReadinessCheck, error) {
	seal, err := relaySeal(cfg, store, m, log)
	if err != nil {
		return httpapi.ReadinessCheck{}, err
	}
	relay, err := messaging.NewRelay(messaging.RelayConfig{Store: store, Pool: store.Pool(), Conn: nc, Stream: stream,
		NotifyChannel: "onboard_events", Logger: log, Metrics: m, Seal: seal})
	if err != nil {
		return httpapi.ReadinessCheck{}, err
	}
	start("relay", relay.Run)
	return httpapi.ReadinessCheck{Name: "seals", Advisory: true, Check: func(context.Context) error {
		if a := relay.Alert(); a != "" {
			return errors.New(a)
		}
		return nil
	}}, nil
}

func (c runConfig) separateMetrics() bool { return c.metricsAddr != "" || c.metricsListener != nil }

// serveMetrics serves /metrics alone on the metrics address, when there
// is one, so that it can be kept off the network the API is published on.
func serveMetrics(cfg runConfig, m *metrics, log *slog.Logger, start func(string, func(context.Context) error)) error {
	if !cfg.separateMetrics() {
		return nil
	}
	ln := cfg.metricsListener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.metricsAddr); err != nil {
			return fmt.Errorf("ONBOARD_METRICS_ADDR: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.handler())
	log.Info("metrics served apart", "addr", ln.Addr().String())
	start("metrics", func(ctx context.Context) error {
		return httpapi.Serve(ctx, httpapi.NewServer(cfg.metricsAddr, mux), ln, 10*time.Second)
	})
	return nil
}

// startCommandChores starts the command role's background work: deleting
// expired idempotency records (the role that writes them deletes them;
// lookups ignore them from then on anyway) and executing bulk operations,
// which are commands.
func startCommandChores(cfg runConfig, store *postgres.Store, tools *operatorTools, m *metrics, log *slog.Logger,
	start func(string, func(context.Context) error)) {
	every := cfg.idempotencyPruneInterval
	if every <= 0 {
		every = time.Hour
	}
	start("idempotency-pruner", func(ctx context.Context) error {
		return pruneEvery(ctx, "idempotency", every, store.DeleteExpiredIdempotency, m.idempotencyDeleted, log)
	})
	start("bulk", tools.bulks.Run)
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
func readModels(cfg runConfig, store *postgres.Store, keys eventstore.KeyReader, m *metrics, log *slog.Logger) (*projections.Projections, error) {
	if !cfg.has("query") && !cfg.has("projector") {
		return nil, nil
	}
	// Projectors are off the pipeline's critical path: paced reads give
	// them fewer, larger batches under load, for up to the pace more lag.
	pace := defaultProjectorPace
	if cfg.projectorPace != nil {
		pace = *cfg.projectorPace
	}
	proj, err := projections.New(projections.Config{Pool: store.Pool(), Source: store.Paced(pace), Keys: keys, OnError: func(name string, err error) {
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
	auth, err := cfg.natsAuth.Options()
	if err != nil {
		return nil, err
	}
	nc, err := messaging.Connect(cfg.natsURL, "onboard-"+fmt.Sprint(cfg.roles), auth...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", cfg.natsURL, err)
	}
	return nc, nil
}

// httpHandler is the process's HTTP surface: the OpenAPI document, the
// metrics, the health checks and the APIs of its roles behind the API
// keys, and the public routes beside them.
func httpHandler(cfg runConfig, store *postgres.Store, cmds *commands.Handler, keys eventstore.KeyStore, proj *projections.Projections, tools *operatorTools, nc *nats.Conn,
	m *metrics, log *slog.Logger, tracer trace.Tracer, checks []httpapi.ReadinessCheck) (http.Handler, error) {
	mux := http.NewServeMux()
	httpapi.RegisterOpenAPI(mux)
	if !cfg.separateMetrics() {
		mux.Handle("GET /metrics", m.handler())
	}
	httpapi.Health{Checks: append(readinessChecks(store.Pool(), nc), checks...)}.Register(mux)
	if cfg.has("command") {
		api, err := httpapi.NewCommandAPI(httpapi.CommandConfig{Commands: cmds, Store: store, WebhookSecret: cfg.webhookSecret, Logger: log, Tracer: tracer})
		if err != nil {
			return nil, err
		}
		api.Register(mux)
	}
	if cfg.has("query") {
		health := process.HealthReader{Pool: store.Pool(), Store: store}
		httpapi.NewQueryAPI(httpapi.QueryConfig{Reads: proj, Events: store, Keys: keys, Health: health, Logger: log}).Register(mux)
		httpapi.RegisterConsole(mux)
		tools.api(log).Register(mux)
		m.reg.MustRegister(newStuckCollector(tools.stuck))
	}
	warnKeyExpiry(cfg.apiKeys, time.Now(), log)
	auth := httpapi.NewAuthenticator(httpapi.AuthConfig{Keys: cfg.apiKeys, RatePerSecond: cfg.apiRate, Burst: cfg.apiBurst})
	root := http.NewServeMux()
	root.Handle("/", auth.Middleware(mux))
	if cfg.public != nil {
		cfg.public(root)
	}
	return root, nil
}

// warnKeyExpiry tells, by name, of the API keys that have expired or
// expire within a week, so that a rotation left half done is seen before
// clients are refused.
func warnKeyExpiry(keys []httpapi.APIKey, now time.Time, log *slog.Logger) {
	for _, k := range keys {
		switch {
		case k.Expired(now):
			log.Warn("API key expired: remove it from ONBOARD_API_KEYS", "name", k.Name, "expired", k.Expires)
		case !k.Expires.IsZero() && k.Expires.Before(now.Add(7*24*time.Hour)):
			log.Warn("API key expires within a week", "name", k.Name, "expires", k.Expires)
		}
	}
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
func startWorker(ctx context.Context, cfg runConfig, store *postgres.Store, cmds *commands.Handler, keys eventstore.KeyStore, nc *nats.Conn,
	stream messaging.StreamConfig, m *metrics, log *slog.Logger, tracer trace.Tracer, start func(string, func(context.Context) error)) error {
	em, err := providers.NewMetrics(m.reg)
	if err != nil {
		return err
	}
	var clients providers.Clients
	breakers := func(provider string) providers.BreakerState { return breakerOf(clients, provider) }
	health := process.NewHealthRecorder(store.Pool(), breakers)
	p := cfg.providers
	for i := range p {
		p[i].Policy.Hooks = health.Hooks(em.Hooks())
	}
	clients, err = providers.NewClients(p[0], p[1], p[2], p[3], p[4])
	if err != nil {
		return err
	}
	oc := cfg.outages
	oc.Pool, oc.Store, oc.Commands, oc.Logger = store.Pool(), store, cmds, log
	oc.OnAlert, oc.OnWaiting = m.outageAlert, m.waitingOn
	outages, err := process.NewOutages(oc)
	if err != nil {
		return err
	}
	timers := process.NewTimers(store.Pool())
	pc := cfg.process
	pc.Commands, pc.Providers, pc.Timers, pc.Logger = cmds, process.ProvidersOf(clients), timers, log
	pc.OnPause, pc.OnRetry, pc.Tracer, pc.Keys = m.onPause, m.onRetry, tracer, keys
	pc.Outages, pc.Breakers = outages, breakers
	pm, err := process.New(pc)
	if err != nil {
		return err
	}
	start("timers", func(ctx context.Context) error { return pm.RunTimers(ctx, 100*time.Millisecond) })
	start("outages", outages.Run)
	start("provider-health", func(ctx context.Context) error { return health.Run(ctx, 5*time.Second, log) })
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
	router, err := messaging.NewRouter(ctx, messaging.RouterConfig{Pool: routerPool, Events: store, Conn: nc, Stream: stream, Logger: log, Metrics: m,
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
// the worker's outage lock, and its LISTEN when it reads the event store
// itself (no NATS).
func heldConns(roles []string, nats bool) int32 {
	var n int32
	for _, r := range roles {
		switch {
		case r == "relay":
			n += 2
		case r == "projector":
			n += int32(len(projections.Names()))
		case r == "worker" && !nats:
			n += 2 // the LISTEN and the outage lock
		case r == "worker":
			n++ // the outage lock
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

// breakerOf is this process's breaker of provider.
func breakerOf(c providers.Clients, provider string) providers.BreakerState {
	switch {
	case provider == providers.ProviderKYC && c.KYC != nil:
		return c.KYC.BreakerState()
	case provider == providers.ProviderPayments && c.Payments != nil:
		return c.Payments.BreakerState()
	case provider == providers.ProviderProvisioning && c.Provisioning != nil:
		return c.Provisioning.BreakerState()
	case provider == providers.ProviderCRM && c.CRM != nil:
		return c.CRM.BreakerState()
	case provider == providers.ProviderEmail && c.Email != nil:
		return c.Email.BreakerState()
	}
	return providers.BreakerClosed
}
