package main

import (
	"errors"
	"fmt"
	"log/slog"
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
	cfg := runConfig{addr: addr, databaseURL: databaseURL(), natsURL: os.Getenv("NATS_URL"), webhookSecret: os.Getenv("KYC_WEBHOOK_SECRET")}
	var errs []error
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
	if len(cfg.roles) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("--roles: name at least one role"))
	}
	if cfg.has("command") {
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
	} else if cfg.has("query") {
		keys, err := httpapi.ParseAPIKeys(os.Getenv("ONBOARD_API_KEYS"))
		if err != nil || len(keys) == 0 {
			errs = append(errs, errors.New("ONBOARD_API_KEYS: set at least one key, as role:name:secret[,...]"))
		}
		cfg.apiKeys = keys
	}
	if cfg.has("worker") {
		provs, err := providerConfigs()
		cfg.providers = provs
		errs = append(errs, err)
	}
	if cfg.has("relay") && cfg.natsURL == "" {
		errs = append(errs, errors.New("NATS_URL: the relay role publishes to NATS JetStream; set NATS_URL (e.g. nats://127.0.0.1:4222)"))
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
	if r := os.Getenv("ONBOARD_INBOX_RETENTION"); r != "" {
		d, err := time.ParseDuration(r)
		if err != nil || d < time.Hour {
			errs = append(errs, fmt.Errorf("ONBOARD_INBOX_RETENTION: want a duration of an hour or more (e.g. 168h), got %q", r))
		}
		cfg.inboxRetention = d
	}
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
	return cfg, newConfigErrors(errs...)
}

// providerConfigs reads each provider's base URL from <NAME>_URL, or from
// SIM_URL (the simulator's /sim root) plus the provider's name, and its
// key from <NAME>_API_KEY.
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
		out[i] = providers.Config{BaseURL: u, APIKey: os.Getenv(env + "_API_KEY")}
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
at a time). Configuration: DATABASE_URL, NATS_URL, NATS_REPLICAS,
ONBOARD_API_KEYS (role:name:secret,...), KYC_WEBHOOK_SECRET, ONBOARD_MASTER_KEY
or ONBOARD_MASTER_KEY_FILE (the personal data's master key; every role but the
relay), and the provider URLs (KYC_URL, PAYMENTS_URL, PROVISIONING_URL,
CRM_URL, EMAIL_URL, or SIM_URL).
Every role serves /healthz, /readyz and /metrics on --addr.`,
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

// loadMasterKeyConfig reads the master key of the personal data, which
// every role that seals or opens it needs.
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
