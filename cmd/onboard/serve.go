package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/onboard/onboard/httpapi"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/providers"
)

var knownRoles = []string{"command", "query", "worker", "relay", "projector"}

var providerNames = [5]string{"kyc", "payments", "provisioning", "crm", "email"}

// loadServeConfig reads and validates the flags and the environment,
// reporting every problem at once, one line each.
func loadServeConfig(addr, roles string) (runConfig, error) {
	cfg := runConfig{addr: addr, natsURL: os.Getenv("NATS_URL")}
	url, err := databaseURL()
	cfg.databaseURL = url
	errs := []error{err}
	before := len(errs)
	for _, r := range strings.Split(roles, ",") {
		r = strings.TrimSpace(r)
		switch {
		case r == "":
		case !slices.Contains(knownRoles, r):
			errs = append(errs, fmt.Errorf("--roles: unknown role %q (known: %s)", r, strings.Join(knownRoles, ", ")))
		case !slices.Contains(cfg.roles, r):
			cfg.roles = append(cfg.roles, r)
		}
	}
	if len(cfg.roles) == 0 && len(errs) == before {
		errs = append(errs, errors.New("--roles: name at least one role"))
	}
	if cfg.has("command") || cfg.has("query") {
		errs = append(errs, loadAPIConfig(&cfg)...)
	}
	if cfg.has("worker") {
		provs, err := providerConfigs()
		cfg.providers = provs
		errs = append(errs, err)
	}
	if cfg.has("relay") && cfg.natsURL == "" {
		errs = append(errs, errors.New("NATS_URL: the relay role publishes to NATS JetStream; set NATS_URL (e.g. nats://127.0.0.1:4222)"))
	}
	if cfg.natsURL != "" && (cfg.has("relay") || cfg.has("worker")) {
		auth, err := natsAuthFromEnv()
		errs = append(errs, err)
		cfg.natsAuth = auth
	}
	if r := os.Getenv("NATS_REPLICAS"); r != "" {
		n, err := strconv.Atoi(r)
		if err != nil || n < 1 || n > 5 {
			errs = append(errs, fmt.Errorf("NATS_REPLICAS: want 1 to 5, got %q", r))
		}
		cfg.natsReplicas = n
	}
	errs = append(errs, loadMasterKeyConfig(&cfg))
	errs = append(errs, loadProcessConfig(&cfg.process)...)
	errs = append(errs, loadOutageConfig(&cfg.outages)...)
	if r := os.Getenv("ONBOARD_INBOX_RETENTION"); r != "" {
		d, err := time.ParseDuration(r)
		if err != nil || d < time.Hour {
			errs = append(errs, fmt.Errorf("ONBOARD_INBOX_RETENTION: want a duration of an hour or more (e.g. 168h), got %q", r))
		}
		cfg.inboxRetention = d
	}
	errs = append(errs, loadOperatorConfig(&cfg)...)
	if r := os.Getenv("ONBOARD_PROJECTOR_PACE"); r != "" {
		d, err := time.ParseDuration(r)
		if err != nil || d < 0 || d > time.Minute {
			errs = append(errs, fmt.Errorf("ONBOARD_PROJECTOR_PACE: want a duration from 0 to 1m (e.g. 100ms), got %q", r))
		}
		cfg.projectorPace = &d
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		errs = append(errs, fmt.Errorf("--addr: %w", err))
	}
	if cfg.metricsAddr = os.Getenv("ONBOARD_METRICS_ADDR"); cfg.metricsAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.metricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("ONBOARD_METRICS_ADDR: %w", err))
		}
	}
	return cfg, newConfigErrors(errs...)
}

// loadAPIConfig reads the HTTP roles' API keys, their rate limit and (for
// the command role) the KYC webhook's secret.
func loadAPIConfig(cfg *runConfig) []error {
	var errs []error
	spec, err := secretEnv("ONBOARD_API_KEYS")
	if err != nil {
		return append(errs, err)
	}
	keys, err := httpapi.ParseAPIKeys(spec)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("ONBOARD_API_KEYS: %w", err))
	case len(keys) == 0:
		errs = append(errs, errors.New("ONBOARD_API_KEYS: set at least one key, as role:name:secret[,...]"))
	}
	cfg.apiKeys = keys
	if v := os.Getenv("ONBOARD_API_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 || math.IsInf(r, 0) {
			errs = append(errs, fmt.Errorf("ONBOARD_API_RATE: want requests per second per key above 0 (e.g. 50), got %q", v))
		}
		cfg.apiRate = r
	}
	if v := os.Getenv("ONBOARD_API_BURST"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("ONBOARD_API_BURST: want a number of requests of 1 or more (e.g. 100), got %q", v))
		}
		cfg.apiBurst = n
	}
	if cfg.has("command") {
		secret, err := secretEnv("KYC_WEBHOOK_SECRET")
		cfg.webhookSecret = secret
		switch {
		case err != nil:
			errs = append(errs, err)
		case len(secret) < 16:
			errs = append(errs, errors.New("KYC_WEBHOOK_SECRET: set the KYC provider's webhook secret (at least 16 characters)"))
		}
	}
	return errs
}

// providerConfigs reads each provider's base URL from <NAME>_URL, or from
// SIM_URL (the simulator's /sim root) plus the provider's name, and its
// key from <NAME>_API_KEY (or <NAME>_API_KEY_FILE).
func providerConfigs() ([5]providers.Config, error) {
	var out [5]providers.Config
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
		key, err := secretEnv(env + "_API_KEY")
		errs = append(errs, err)
		out[i] = providers.Config{BaseURL: u, APIKey: key}
	}
	// Durations of the provider clients' policy (providers.Policy), each
	// set for every provider.
	for _, v := range []struct {
		name string
		min  time.Duration
		set  func(*providers.Policy, time.Duration)
	}{
		{"ONBOARD_BREAKER_OPEN_TIMEOUT", 10 * time.Millisecond, func(p *providers.Policy, d time.Duration) { p.Breaker.OpenTimeout = d }},
		{"ONBOARD_PROVIDER_RETRY_BASE_DELAY", time.Millisecond, func(p *providers.Policy, d time.Duration) { p.BaseDelay = d }},
		{"ONBOARD_PROVIDER_RETRY_MAX_DELAY", time.Millisecond, func(p *providers.Policy, d time.Duration) { p.MaxDelay = d }},
		{"ONBOARD_PROVIDER_MAX_RETRY_AFTER", time.Millisecond, func(p *providers.Policy, d time.Duration) { p.MaxRetryAfter = d }},
	} {
		raw := os.Getenv(v.name)
		if raw == "" {
			continue
		}
		d, err := time.ParseDuration(raw)
		if err != nil || d < v.min {
			errs = append(errs, fmt.Errorf("%s: want a duration of at least %v (e.g. 30s), got %q", v.name, v.min, raw))
			continue
		}
		for i := range out {
			v.set(&out[i].Policy, d)
		}
	}
	for i := range out {
		if err := out[i].Policy.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("provider %s: %w", providerNames[i], err))
			break
		}
	}
	return out, errors.Join(errs...)
}

func newServeCmd() *cobra.Command {
	var addr, roles string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run production roles: " + strings.Join(knownRoles, ", "),
		Long: `Runs the roles named by --roles in this process; each role can run in its own
process and scale out (workers share durable consumers; one relay is active
at a time). Configuration: DATABASE_URL, NATS_URL, NATS_REPLICAS, the NATS
credentials (NATS_USER and NATS_PASSWORD, NATS_CREDS or NATS_NKEY_SEED;
NATS_TLS_CA, NATS_TLS_CERT, NATS_TLS_KEY), ONBOARD_API_KEYS
(role:name:secret,...), KYC_WEBHOOK_SECRET, ONBOARD_MASTER_KEY (the personal
data's master key; every role but the relay), and the provider URLs (KYC_URL,
PAYMENTS_URL, PROVISIONING_URL, CRM_URL, EMAIL_URL, or SIM_URL).
Every secret may be given as a file instead (<VAR>_FILE). Every role serves
/healthz, /readyz and /metrics on --addr (/metrics on ONBOARD_METRICS_ADDR
when set). Each process connects as a login role in the database group roles
of its roles (docs/database-roles.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadServeConfig(addr, roles)
			if err != nil {
				return err
			}
			tp, stop, err := newTracerProvider(cmd.Context())
			if err != nil {
				return err
			}
			defer stop()
			cfg.tracer = tp
			return run(cmd.Context(), cfg, slog.New(process.ContextLogHandler(slog.NewJSONHandler(os.Stderr, nil))))
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "listen address (API, health, metrics)")
	cmd.Flags().StringVar(&roles, "roles", "command", "comma-separated roles: "+strings.Join(knownRoles, ","))
	return cmd
}

// loadProcessConfig reads the worker's tuning from the environment; unset
// variables keep the process managers' defaults.
func loadProcessConfig(pc *process.Config) []error {
	var errs []error
	duration := func(name string, min time.Duration, into *time.Duration) {
		v := os.Getenv(name)
		if v == "" {
			return
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < min {
			errs = append(errs, fmt.Errorf("%s: want a duration of at least %v (e.g. 2s, 5m), got %q", name, min, v))
			return
		}
		*into = d
	}
	duration("ONBOARD_RETRY_BASE_DELAY", time.Millisecond, &pc.BaseDelay)
	duration("ONBOARD_RETRY_MAX_DELAY", time.Millisecond, &pc.MaxDelay)
	duration("ONBOARD_KYC_DEADLINE", time.Second, &pc.VerificationDeadline)
	if pc.BaseDelay > 0 && pc.MaxDelay > 0 && pc.MaxDelay < pc.BaseDelay {
		errs = append(errs, fmt.Errorf("ONBOARD_RETRY_MAX_DELAY %v is below ONBOARD_RETRY_BASE_DELAY %v", pc.MaxDelay, pc.BaseDelay))
	}
	if v := os.Getenv("ONBOARD_KYC_POLLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			errs = append(errs, fmt.Errorf("ONBOARD_KYC_POLLS: want 1 to 100, got %q", v))
		} else {
			pc.VerificationPolls = n
		}
	}
	if v := os.Getenv("ONBOARD_SUPPORT_EMAIL"); v != "" {
		if !strings.Contains(v, "@") {
			errs = append(errs, fmt.Errorf("ONBOARD_SUPPORT_EMAIL: want an email address, got %q", v))
		} else {
			pc.SupportEmail = v
		}
	}
	return errs
}

// loadOutageConfig reads how customers resume after a provider's outage.
func loadOutageConfig(oc *process.OutageConfig) []error {
	var errs []error
	if v := os.Getenv("ONBOARD_RESUME_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 || r > 10000 {
			errs = append(errs, fmt.Errorf("ONBOARD_RESUME_RATE: want customers per second, above 0 and up to 10000, got %q", v))
		} else {
			oc.ResumeRate = r
		}
	}
	if v := os.Getenv("ONBOARD_OUTAGE_PROBE_EVERY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 100*time.Millisecond {
			errs = append(errs, fmt.Errorf("ONBOARD_OUTAGE_PROBE_EVERY: want a duration of at least 100ms (e.g. 5s), got %q", v))
		} else {
			oc.ProbeEvery = d
		}
	}
	return errs
}

// loadMasterKeyConfig reads the master key of the personal data, which
// every role that encrypts or decrypts it needs.
func loadMasterKeyConfig(cfg *runConfig) error {
	k, err := loadMasterKey()
	if err != nil {
		return err
	}
	if k == nil && slices.ContainsFunc(cfg.roles, func(r string) bool { return slices.Contains(rolesWithPersonalData, r) }) {
		return errors.New("ONBOARD_MASTER_KEY: set the master key of the personal data (the base64 of 32 random bytes: openssl rand -base64 32), or ONBOARD_MASTER_KEY_FILE")
	}
	cfg.masterKey = k
	return nil
}
