package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/external"
	"github.com/onboard/onboard/handlers"
	"github.com/onboard/onboard/httpapi"
)

var knownRoles = []string{"command", "query", "worker", "relay", "projector"}

// serveConfig is everything `onboard serve` reads from flags and the
// environment, validated at start with one message per problem.
type serveConfig struct {
	addr          string
	roles         []string
	databaseURL   string
	apiKeys       []httpapi.APIKey
	webhookSecret string
	providers     [5]external.Config // kyc, payments, provisioning, crm, email
}

var providerNames = [5]string{"kyc", "payments", "provisioning", "crm", "email"}

// providerConfigs reads each provider's base URL from <NAME>_URL, or from
// SIM_URL (the simulator's /sim root) plus the provider's name, and its
// key from <NAME>_API_KEY.
func providerConfigs() ([5]external.Config, error) {
	var out [5]external.Config
	var errs []error
	simURL := strings.TrimRight(os.Getenv("SIM_URL"), "/")
	for i, name := range providerNames {
		env := strings.ToUpper(name)
		u := os.Getenv(env + "_URL")
		if u == "" && simURL != "" {
			u = simURL + "/" + name
		}
		if u == "" {
			errs = append(errs, fmt.Errorf("%s_URL: set the %s provider's base URL (or SIM_URL for the simulator)", env, name))
		}
		out[i] = external.Config{BaseURL: u, APIKey: os.Getenv(env + "_API_KEY")}
	}
	return out, errors.Join(errs...)
}

func loadServeConfig(addr, roles string) (serveConfig, error) {
	cfg := serveConfig{addr: addr, databaseURL: databaseURL(), webhookSecret: os.Getenv("KYC_WEBHOOK_SECRET")}
	var errs []error
	for _, r := range strings.Split(roles, ",") {
		r = strings.TrimSpace(r)
		switch {
		case r == "":
		case !slices.Contains(knownRoles, r):
			errs = append(errs, fmt.Errorf("--roles: unknown role %q (known: %s)", r, strings.Join(knownRoles, ", ")))
		case r != "command" && r != "worker":
			errs = append(errs, fmt.Errorf("--roles: role %q is not built yet; this build serves: command, worker", r))
		default:
			cfg.roles = append(cfg.roles, r)
		}
	}
	if len(cfg.roles) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("--roles: name at least one role"))
	}
	if slices.Contains(cfg.roles, "command") {
		keys, err := httpapi.ParseAPIKeys(os.Getenv("ONBOARD_API_KEYS"))
		if err != nil {
			errs = append(errs, fmt.Errorf("ONBOARD_API_KEYS: %w", err))
		}
		if len(keys) == 0 && err == nil {
			errs = append(errs, errors.New("ONBOARD_API_KEYS: set at least one key, as role:name:secret[,...]"))
		}
		cfg.apiKeys = keys
		if len(cfg.webhookSecret) < 16 {
			errs = append(errs, errors.New("KYC_WEBHOOK_SECRET: set the KYC provider's webhook secret (at least 16 characters)"))
		}
	}
	if slices.Contains(cfg.roles, "worker") {
		providers, err := providerConfigs()
		cfg.providers = providers
		errs = append(errs, err)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		errs = append(errs, fmt.Errorf("--addr: %w", err))
	}
	return cfg, errors.Join(errs...)
}

func newServeCmd() *cobra.Command {
	var addr, roles string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the production roles (today: command, worker)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadServeConfig(addr, roles)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, slog.New(slog.NewJSONHandler(os.Stderr, nil)))
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "listen address")
	cmd.Flags().StringVar(&roles, "roles", "command", "comma-separated roles: "+strings.Join(knownRoles, ","))
	return cmd
}

func serve(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	if err := postgres.EnsureDatabase(ctx, cfg.databaseURL); err != nil {
		return fmt.Errorf("cannot reach Postgres at DATABASE_URL (is it running?): %w", err)
	}
	if err := postgres.Migrate(ctx, cfg.databaseURL); err != nil {
		return fmt.Errorf("cannot migrate the database at DATABASE_URL: %w", err)
	}
	store, err := postgres.Open(ctx, cfg.databaseURL, postgres.Config{})
	if err != nil {
		return err
	}
	defer store.Close()
	commands, err := handlers.NewCommands(handlers.CommandsConfig{Store: store})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	running := 0
	if slices.Contains(cfg.roles, "worker") {
		pm, err := newWorker(ctx, cfg, store, commands, log)
		if err != nil {
			return err
		}
		running += 2
		go func() {
			errc <- pm.Run(ctx, handlers.RunConfig{Name: "process-managers", Pool: store.Pool(), Source: store, Workers: 16})
		}()
		go func() { errc <- pm.RunTimers(ctx, 100*time.Millisecond) }()
		log.Info("worker running: process managers and timers")
	}
	if slices.Contains(cfg.roles, "command") {
		running++
		go func() { errc <- serveHTTP(ctx, cfg, store, commands, log) }()
	}
	// The first role to stop stops the others.
	err = <-errc
	cancel()
	for range running - 1 {
		if e := <-errc; err == nil || errors.Is(err, context.Canceled) {
			err = e
		}
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func newWorker(ctx context.Context, cfg serveConfig, store *postgres.Store, commands *handlers.Commands, log *slog.Logger) (*handlers.ProcessManager, error) {
	p := cfg.providers
	clients, err := external.NewClients(p[0], p[1], p[2], p[3], p[4])
	if err != nil {
		return nil, err
	}
	timers := handlers.NewTimers(store.Pool())
	if err := timers.Migrate(ctx); err != nil {
		return nil, err
	}
	return handlers.NewProcessManager(handlers.ProcessConfig{Commands: commands, Providers: clients.ForHandlers(), Timers: timers, Logger: log})
}

func serveHTTP(ctx context.Context, cfg serveConfig, store *postgres.Store, commands *handlers.Commands, log *slog.Logger) error {
	api, err := httpapi.NewCommandAPI(httpapi.CommandConfig{Commands: commands, Store: store, WebhookSecret: cfg.webhookSecret, Logger: log})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	api.Register(mux)
	httpapi.RegisterOpenAPI(mux)
	httpapi.Health{Checks: []httpapi.ReadinessCheck{
		{Name: "postgres", Check: func(ctx context.Context) error { return store.Pool().Ping(ctx) }},
	}}.Register(mux)
	auth := httpapi.NewAuthenticator(httpapi.AuthConfig{Keys: cfg.apiKeys})
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	log.Info("serving", "addr", ln.Addr().String(), "roles", cfg.roles)
	return httpapi.Serve(ctx, httpapi.NewServer(cfg.addr, auth.Middleware(mux)), ln, 10*time.Second)
}
