package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"

	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/httpapi"
	"github.com/onboard/onboard/messaging"
	"github.com/onboard/onboard/process"
	"github.com/onboard/onboard/providers"
	"github.com/onboard/onboard/providers/sim"
	"github.com/onboard/onboard/schema"
)

// The development keys `onboard dev` prints at start. They are for a
// laptop: serve refuses nothing, but never use them anywhere else.
const (
	devClientKey     = "dev-client-key-0123456789"
	devOperatorKey   = "dev-operator-key-0123456789"
	devWebhookSecret = "whsec_dev_0123456789abcdef"
)

type devOptions struct {
	addr, dataDir string
	demo          int
	// reset wipes dataDir before starting.
	reset bool
	// demoRate is the demo's signups per minute.
	demoRate float64
	stdout   io.Writer
	logLevel slog.Level
	// logs receives the JSON log lines; default stderr.
	logs io.Writer
	// tracer records spans (tests); nil reads the OTEL_ environment.
	tracer trace.TracerProvider
	// simConfig replaces the default failure mix (tests).
	simConfig *sim.Config
	// process tunes the process managers (tests); zero means dev defaults.
	process *process.Config
	// tune changes the run configuration last (tests).
	tune func(*runConfig)
}

func newDevCmd() *cobra.Command {
	opts := devOptions{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole pipeline in one process, with the provider simulator",
		Long: `Runs an embedded NATS JetStream server (unless NATS_URL is set), the
provider simulator, the relay, the process managers, the projectors, the command
and query APIs and the operator console, all on --addr, against DATABASE_URL.
Without DATABASE_URL it uses the Postgres at 127.0.0.1:5432, and when nothing
answers there it runs a private one with its data in --data-dir: from the
installed server binaries, or from binaries it downloads once. Unlike onboard
serve, it creates the database if missing and applies the migrations itself.
--reset wipes --data-dir first: the private Postgres's events, NATS's files
and the keys.
--demo N also signs up N simulated customers, --demo-rate a minute (20 by
default: 50 customers over two and a half minutes), with the default failure
mix, so that the console shows customers at every stage for a few minutes.
The simulator's admin endpoints (/sim/admin/...) take the operator key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.demo < 0 {
				return fmt.Errorf("--demo: want a number of customers, 0 or more, got %d", opts.demo)
			}
			if !(opts.demoRate > 0 && opts.demoRate <= maxDemoRate) {
				return fmt.Errorf("--demo-rate: want signups per minute above 0 and up to %d, got %v", maxDemoRate, opts.demoRate)
			}
			opts.stdout = cmd.OutOrStdout()
			return runDev(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.addr, "addr", "127.0.0.1:8080", "listen address of the APIs, console and simulator")
	cmd.Flags().StringVar(&opts.dataDir, "data-dir", "./.onboard", "where the private Postgres, the embedded NATS server and the keys keep their files")
	cmd.Flags().BoolVar(&opts.reset, "reset", false, "wipe --data-dir before starting: events, NATS and keys")
	cmd.Flags().IntVar(&opts.demo, "demo", 0, "sign up this many simulated customers, at --demo-rate")
	cmd.Flags().Float64Var(&opts.demoRate, "demo-rate", defaultDemoRate, "the demo's signups per minute")
	return cmd
}

// defaultDemoRate is the demo's signups per minute: a steady trickle, so
// that the console shows customers arriving, retrying, pausing and
// finishing for minutes rather than one burst over in seconds.
// maxDemoRate keeps it a demo, not a load test (that is onboard bench).
const (
	defaultDemoRate = 20
	maxDemoRate     = 6000
)

// devSimConfig is the default failure mix of the simulator in dev: flaky
// enough to show retries, pauses and the ledger at work.
func devSimConfig(demo bool) sim.Config {
	cfg := sim.Config{Seed: uint64(time.Now().UnixNano()), KYC: sim.KYCConfig{
		Approve: 0.9, Reject: 0.07, Silent: 0.03,
		Delay: sim.Latency{Min: sim.Duration(200 * time.Millisecond), Max: sim.Duration(2 * time.Second)},
	}}
	if demo {
		flaky := sim.ProviderConfig{Latency: sim.Latency{Min: sim.Duration(5 * time.Millisecond), Max: sim.Duration(80 * time.Millisecond)},
			TransientRate: 0.1, PermanentRate: 0.01, LostResponseRate: 0.02, RetryAfter: sim.Duration(500 * time.Millisecond)}
		cfg.Providers = map[string]sim.ProviderConfig{"kyc": flaky, "payments": flaky, "provisioning": flaky, "crm": flaky, "email": flaky}
	}
	return cfg
}

func runDev(ctx context.Context, opts devOptions) error {
	if opts.logs == nil {
		opts.logs = os.Stderr
	}
	log := slog.New(process.ContextLogHandler(slog.NewJSONHandler(opts.logs, &slog.HandlerOptions{Level: opts.logLevel})))
	if opts.reset {
		if err := resetDataDir(ctx, opts.dataDir); err != nil {
			return err
		}
	}
	pg, err := openDevDB(ctx, opts.dataDir, opts.stdout)
	if err != nil {
		return err
	}
	defer pg.close()
	url := pg.url
	db := describeDatabase(url)
	if err := schema.EnsureDatabase(ctx, url); err != nil {
		return fmt.Errorf("postgres is not reachable for database %s (start it, or set DATABASE_URL): %w", db, err)
	}
	// A laptop convenience: the roles of onboard serve only check the
	// version and leave migrating to `onboard migrate`.
	if err := schema.Migrate(ctx, url); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", opts.addr)
	if err != nil {
		return fmt.Errorf("--addr %s: %w", opts.addr, err)
	}
	base := "http://" + ln.Addr().String()

	natsURL, natsAuth, tools := os.Getenv("NATS_URL"), messaging.ClientAuth{}, ""
	if natsURL == "" {
		srv, err := messaging.StartEmbedded(messaging.EmbeddedConfig{DataDir: filepath.Join(opts.dataDir, "nats")})
		if err != nil {
			ln.Close()
			return fmt.Errorf("start the embedded NATS server in %s: %w", opts.dataDir, err)
		}
		defer srv.Shutdown()
		natsURL, natsAuth = srv.ClientURL(), srv.Credentials(messaging.DevUser)
		if tools, err = writeDevCredentials(srv, filepath.Join(opts.dataDir, "nats-credentials")); err != nil {
			ln.Close()
			return fmt.Errorf("write the NATS tools' credentials: %w", err)
		}
	} else if natsAuth, err = natsAuthFromEnv(); err != nil {
		ln.Close()
		return err
	}

	simCfg := devSimConfig(opts.demo > 0)
	if opts.simConfig != nil {
		simCfg = *opts.simConfig
	}
	simCfg.KYC.CallbackURL = base + "/v1/webhooks/kyc"
	simCfg.KYC.WebhookSecret = devWebhookSecret
	simCfg.AdminKey = devOperatorKey
	s, err := sim.New(simCfg)
	if err != nil {
		ln.Close()
		return err
	}
	defer s.Close()

	cfg, err := devRunConfig(opts, url, ln, natsURL, s)
	if err != nil {
		return err
	}
	cfg.natsAuth = natsAuth
	cfg.tracer = opts.tracer
	if cfg.tracer == nil {
		tp, stop, err := newTracerProvider(ctx)
		if err != nil {
			return err
		}
		defer stop()
		cfg.tracer = tp
	}
	printDevBanner(opts.stdout, base, natsURL, db, pg.about(), cfg.sealKey)
	if tools != "" {
		fmt.Fprintf(opts.stdout, "NATS refuses clients without credentials; the tools' users:\n"+
			"  NATS_URL=%s NATS_USER=operator NATS_PASSWORD_FILE=%s onboard deadletters redrive ...\n"+
			"  NATS_USER=auditor NATS_PASSWORD_FILE=%s for onboard replay verify --nats\n",
			natsURL, filepath.Join(tools, "operator.password"), filepath.Join(tools, "auditor.password"))
	}
	if opts.demo > 0 {
		rate := opts.demoRate
		if rate <= 0 {
			rate = defaultDemoRate
		}
		every := time.Duration(float64(time.Minute) / rate)
		fmt.Fprintf(opts.stdout, "Demo: %d signups, one every %v (over %v)\n", opts.demo, every.Round(time.Millisecond),
			(time.Duration(opts.demo-1) * every).Round(time.Second))
		go driveDemo(ctx, base, opts.demo, every, log)
	}
	return run(ctx, cfg, log)
}

// devRunConfig is the runConfig of onboard dev: every role, the
// development keys, the simulator s mounted under /sim/, and the seal key
// of ONBOARD_SEAL_KEY or one kept in the data dir.
func devRunConfig(opts devOptions, url string, ln net.Listener, natsURL string, s http.Handler) (runConfig, error) {
	base := "http://" + ln.Addr().String()
	keys, err := httpapi.ParseAPIKeys("client:dev-client:" + devClientKey + ",operator:dev-operator:" + devOperatorKey)
	if err != nil {
		return runConfig{}, err
	}
	var provs [5]providers.Config
	for i, name := range providerNames {
		provs[i] = providers.Config{BaseURL: base + "/sim/" + name}
	}
	cfg := runConfig{
		addr: ln.Addr().String(), listener: ln, roles: knownRoles, databaseURL: url, natsURL: natsURL,
		apiKeys: keys, webhookSecret: devWebhookSecret, providers: provs,
		process: process.Config{BaseDelay: 500 * time.Millisecond, MaxDelay: 30 * time.Second, VerificationDeadline: 30 * time.Second},
		public:  func(mux *http.ServeMux) { mux.Handle("/sim/", http.StripPrefix("/sim", s)) },
	}
	if opts.process != nil {
		cfg.process = *opts.process
	}
	if err := errors.Join(loadOperatorConfig(&cfg)...); err != nil {
		return runConfig{}, err
	}
	if opts.tune != nil {
		opts.tune(&cfg)
	}
	if cfg.sealKey, err = loadSealKey(); err == nil && cfg.sealKey == nil {
		cfg.sealKey, err = devSealKey(opts.dataDir)
	}
	if err != nil {
		return runConfig{}, err
	}
	if cfg.masterKey, err = loadMasterKey(); err == nil && cfg.masterKey == nil {
		cfg.masterKey, err = devMasterKey(opts.dataDir)
	}
	if err != nil {
		return runConfig{}, err
	}
	return cfg, nil
}

// printDevBanner prints where everything is, the development keys, a
// signup to paste, and the seals' public key. Other tools read the key and
// NATS lines: keep their shapes.
func printDevBanner(w io.Writer, base, natsURL, db, postgres string, sealKey ed25519.PrivateKey) {
	fmt.Fprintf(w, `onboard dev is running
  console      %[1]s/            (operator key: %[2]s)
  API          %[1]s/v1/...      (client key: %[3]s)
  OpenAPI      %[1]s/openapi.yaml
  metrics      %[1]s/metrics
  simulator    %[1]s/sim/ledger   %[1]s/sim/admin/config   (admin endpoints: the operator key)
  NATS         %[4]s
  database     %[5]s%[6]s
Sign a customer up:
  curl -s -X POST %[1]s/v1/customers -H 'Authorization: Bearer %[3]s' \
    -H 'Idempotency-Key: demo-1' -H 'Content-Type: application/json' \
    -d '{"email":"ada@example.com","company":"Analytical Engines","contact_name":"Ada Lovelace","country":"GB","plan":"growth"}'
`, base, devOperatorKey, devClientKey, natsURL, db, postgresLine(postgres))
	fmt.Fprintf(w, "The relay seals the log; verify with its public key:\n  ONBOARD_SEAL_PUBLIC_KEY=%s onboard replay verify\n",
		eventstore.EncodePublicKey(sealKey.Public().(ed25519.PublicKey)))
}

// postgresLine is the banner's line on a private Postgres, if dev runs one.
func postgresLine(about string) string {
	if about == "" {
		return ""
	}
	return "\n  postgres     " + about
}

// describeDatabase names the database of url and where it is, without
// its credentials.
func describeDatabase(url string) string {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return "(DATABASE_URL does not parse)"
	}
	return fmt.Sprintf("%s at %s", cfg.Database, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
}

// driveDemo signs up n simulated customers through the API, the first at
// once and then one every interval, so that the console shows customers at
// every stage while it runs.
func driveDemo(ctx context.Context, base string, n int, every time.Duration, log *slog.Logger) {
	client := &http.Client{Timeout: 10 * time.Second}
	tick := time.NewTicker(every)
	defer tick.Stop()
	run := time.Now().Unix()
	for i := 0; i < n; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		body := fmt.Sprintf(`{"email":"demo%d-%d@example.com","company":"Demo Company %d","contact_name":"Demo Contact","country":"DE","plan":"growth"}`, run, i, i)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/customers", bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", "Bearer "+devClientKey)
		req.Header.Set("Idempotency-Key", fmt.Sprintf("demo-%d-%d", run, i))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("demo signup failed", "err", err)
			}
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	log.Info("demo signups sent", "count", n)
}
