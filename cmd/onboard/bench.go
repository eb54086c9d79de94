package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/onboard/onboard/internal/bench"
	"github.com/onboard/onboard/messaging"
)

type benchOptions struct {
	only     []string
	sizes    bench.Sizes
	json     bool
	profile  string // CPU profile file, "" for none
	stdout   io.Writer
	progress io.Writer
}

func newBenchCmd() *cobra.Command {
	opts := benchOptions{sizes: bench.DefaultSizes()}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure each throughput figure beside its ceiling and print a table",
		Long: `Measures, in one process and one run, each figure of the pipeline beside its
ceiling on the same machine:

  append   Append events/s vs raw INSERTs of the same rows, per concurrency level
  read     ReadAll events/s vs one raw SELECT of the same columns
  relay    relay events/s (event store to JetStream acks) vs raw JetStream async publishes
  e2e      onboardings/s and signup-to-active latency p50/p99 through the whole
           pipeline over HTTP (embedded NATS, zero-latency simulated providers),
           per concurrency level, and the CPU time and context switches an
           onboarding costs this process and, when it runs on this host, the
           Postgres server; then this process's live heap after a forced
           collection, at the end and again after --idle. --workers N runs
           N worker roles, each with its own pool and NATS connection, as N
           worker processes would (all in this process)
  rebuild  projection rebuild events/s vs the raw SELECT scan
  verify   hash-chain and state-machine verification events/s vs the raw SELECT scan

Each figure runs in fresh temporary databases on the Postgres server of
DATABASE_URL, which the run creates and drops; NATS is embedded in a
temporary directory. Progress goes to stderr, the table (or --json) to stdout.
The exit status is 0 even when a goal is missed; it is 1 when a figure fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.stdout, opts.progress = cmd.OutOrStdout(), cmd.ErrOrStderr()
			return runBench(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&opts.only, "only", nil, "measure only these figures (append, read, relay, e2e, rebuild, verify)")
	f.IntVar(&opts.sizes.Events, "events", opts.sizes.Events, "events per append level and side, and for read and relay")
	f.IntVar(&opts.sizes.ReplayEvents, "replay-events", opts.sizes.ReplayEvents, "events of generated journeys for rebuild and verify")
	f.IntVar(&opts.sizes.Customers, "customers", opts.sizes.Customers, "onboardings per end-to-end concurrency level")
	f.IntSliceVar(&opts.sizes.AppendConcurrency, "append-concurrency", opts.sizes.AppendConcurrency, "concurrency levels of the append figure")
	f.IntSliceVar(&opts.sizes.E2EConcurrency, "e2e-concurrency", opts.sizes.E2EConcurrency, "concurrency levels of the end-to-end figure")
	f.IntVar(&opts.sizes.Workers, "workers", opts.sizes.Workers, "worker roles of the end-to-end figure, each with its own pool and NATS connection (0: every role together, as in onboard dev)")
	f.DurationVar(&opts.sizes.Idle, "idle", opts.sizes.Idle, "how long the end-to-end figure idles before it measures the live heap again (0: not again)")
	f.BoolVar(&opts.sizes.Unsealed, "unsealed", false, "run e2e without the relay sealing the log, to compare with a run that seals it")
	f.BoolVar(&opts.sizes.Plaintext, "plaintext", false, "run e2e without encrypting personal data, to compare with a run that encrypts it")
	f.BoolVar(&opts.json, "json", false, "print the report as JSON instead of a table")
	f.StringVar(&opts.profile, "cpuprofile", "", "write a CPU profile of the whole run (pipeline included) to this file")
	return cmd
}

// benchFigures lists every figure in the order a run measures them: those
// of package bench, plus the two that need NATS and the whole pipeline,
// which only this package may wire.
func benchFigures() []bench.Figure {
	f := bench.Figures()
	return []bench.Figure{f[0], f[1],
		{Name: "relay", Run: benchRelay},
		{Name: "e2e", Run: benchEndToEnd},
		f[2], f[3]}
}

// ErrBenchFailed is returned when a figure could not be measured.
var ErrBenchFailed = errors.New("benchmark failed")

func runBench(ctx context.Context, opts benchOptions) error {
	figures, err := bench.Select(benchFigures(), opts.only)
	if err != nil {
		return err
	}
	url, err := databaseURL()
	if err != nil {
		return err
	}
	env, err := bench.NewEnv(ctx, url, opts.sizes, opts.progress)
	if err != nil {
		return err
	}
	if opts.profile != "" {
		f, err := os.Create(opts.profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := bench.Run(ctx, env, figures)
	// The databases are dropped even when the run was interrupted.
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if cerr := env.Close(closeCtx); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		return err
	}
	if opts.json {
		err = rep.WriteJSON(opts.stdout)
	} else {
		err = rep.WriteTable(opts.stdout)
	}
	if err != nil {
		return err
	}
	if len(rep.Failures) > 0 {
		return fmt.Errorf("%w: %d figure(s) failed", ErrBenchFailed, len(rep.Failures))
	}
	return nil
}

// benchRelay seeds Sizes.Events events, then measures a relay publishing
// them all from the start to an embedded JetStream (until every one is
// acknowledged), and the ceiling: async publishes of messages of the same
// subject, size and headers, each with a fresh Nats-Msg-Id, through the
// same window of 4,096 pending acks.
func benchRelay(ctx context.Context, env *bench.Env) ([]bench.Result, error) {
	store, err := env.OpenStore(ctx, "relay", 4)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	n := env.Sizes().Events
	if err := bench.SeedEvents(ctx, store.Pool(), n); err != nil {
		return nil, err
	}
	if err := bench.WaitReadable(ctx, store); err != nil {
		return nil, err
	}
	srv, cleanup, err := startBenchNATS()
	if err != nil {
		return nil, err
	}
	defer cleanup()
	nc, err := srv.Connect("onboard-bench")
	if err != nil {
		return nil, err
	}
	defer nc.Close()

	first, relayed, err := timeRelay(ctx, store, nc, n)
	if err != nil {
		return nil, err
	}
	raw, err := timeRawPublishes(ctx, nc, n)
	if err != nil {
		return nil, err
	}
	return []bench.Result{bench.NewResult("relay", "events/s", int64(n)-first, relayed, float64(n)/raw.Seconds(), "raw publish",
		bench.RatioAtLeast(0.70))}, nil
}

// timeRelay runs a relay until it has published the store's n events and
// returns how long it took for all but the first acknowledged batch, and
// that batch's size. The clock starts at that batch: the relay's start-up
// (the lead, the streams' creation, the cursor) is no part of its rate,
// and the raw publishes go to streams that exist. When that batch was all
// of them, it is all there is to time (first is 0).
func timeRelay(ctx context.Context, store *bench.Store, nc *nats.Conn, n int) (first int64, relayed time.Duration, err error) {
	relay, err := messaging.NewRelay(messaging.RelayConfig{Store: store, Pool: store.Pool(), Conn: nc, Stream: messaging.StreamConfig{},
		NotifyChannel: "onboard_events", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return 0, 0, err
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	began := time.Now()
	go func() { done <- relay.Run(rctx) }()
	var start time.Time
	for {
		published := relay.Stats().Published
		if published > 0 && start.IsZero() {
			start, first = time.Now(), published
		}
		if published >= int64(n) {
			break
		}
		select {
		case err := <-done:
			stop()
			return 0, 0, fmt.Errorf("relay stopped: %w", err)
		case <-ctx.Done():
			stop()
			<-done
			return 0, 0, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	relayed = time.Since(start)
	if first >= int64(n) {
		first, relayed = 0, time.Since(began)
	}
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return 0, 0, fmt.Errorf("relay: %w", err)
	}
	return first, relayed, nil
}

// timeRawPublishes returns how long n async publishes of copies of the
// stream's last message take, each with a fresh Nats-Msg-Id, through a
// window of 4,096 pending acks.
func timeRawPublishes(ctx context.Context, nc *nats.Conn, n int) (time.Duration, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return 0, err
	}
	s, err := js.Stream(ctx, messaging.DefaultStreamName)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	sample, err := s.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	const batch = 1000
	for i := 0; i < n; i += batch {
		if err := publishCopies(ctx, js, sample, min(batch, n-i)); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// publishCopies publishes count copies of sample, each with a fresh
// Nats-Msg-Id, and waits for their acks.
func publishCopies(ctx context.Context, js jetstream.JetStream, sample *jetstream.RawStreamMsg, count int) error {
	futures := make([]jetstream.PubAckFuture, 0, count)
	for range count {
		m := nats.NewMsg(sample.Subject)
		m.Data = sample.Data
		for k, v := range sample.Header {
			m.Header[k] = v
		}
		m.Header.Del("Nats-Expected-Last-Sequence")
		m.Header.Set(messaging.HeaderMsgID, uuid.NewString())
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("raw publish: %w", err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("raw publish: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// startBenchNATS starts an embedded NATS server with JetStream in a
// temporary directory; cleanup stops it and removes the directory.
func startBenchNATS() (*messaging.Server, func(), error) {
	dir, err := os.MkdirTemp("", "onboard-bench-nats-")
	if err != nil {
		return nil, nil, err
	}
	srv, err := messaging.StartEmbedded(messaging.EmbeddedConfig{DataDir: dir})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("start the embedded NATS server: %w", err)
	}
	return srv, func() {
		srv.Shutdown()
		os.RemoveAll(dir)
	}, nil
}
