package projections

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onboard/onboard/eventstore"
)

// Source is the part of the event store projectors read: the global log,
// by subscription (live) and in batches (rebuilds, lag).
type Source interface {
	eventstore.Subscriber
	eventstore.AllReader
}

// Config configures Projections. Pool and Source are required.
type Config struct {
	// Pool holds the read models. It is the event store's database:
	// CursorAt reads the events table. Each running projector holds one
	// connection of the Source's pool to listen and briefly uses two more;
	// size the pools for that plus the readers (pgxpool's default of
	// max(4, CPUs) is too small when Source shares this pool).
	Pool *pgxpool.Pool
	// Source is the event store.
	Source Source
	// BatchSize is the most events a live projector applies in one
	// transaction. Default 500.
	BatchSize int
	// RebuildBatchSize is the most events a rebuild applies in one
	// transaction. Default 5000.
	RebuildBatchSize int
	// PollInterval is how often WaitFor looks at the checkpoint. Default
	// 10ms.
	PollInterval time.Duration
	// RetryDelay is how long a projector waits after a failed batch before
	// it resubscribes from its checkpoint. Default 1s.
	RetryDelay time.Duration
	// OnError, when set, is told about every failed batch (for logs and
	// metrics); the projector retries it after RetryDelay.
	OnError func(projection string, err error)
	// Now is the clock for Lag. Default time.Now.
	Now func() time.Time
	// Keys decrypts the customers' personal data for the customer
	// summary; without it encrypted fields show as domain.Encrypted.
	Keys eventstore.KeyReader
}

func (c *Config) setDefaults() {
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.RebuildBatchSize == 0 {
		c.RebuildBatchSize = 5000
	}
	if c.PollInterval == 0 {
		c.PollInterval = 10 * time.Millisecond
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every invalid setting.
func (c Config) Validate() error {
	var errs []error
	if c.Pool == nil {
		errs = append(errs, errors.New("pool is required"))
	}
	if c.Source == nil {
		errs = append(errs, errors.New("source is required"))
	}
	if c.BatchSize < 0 || c.RebuildBatchSize < 0 {
		errs = append(errs, fmt.Errorf("batch sizes %d, %d: must not be negative", c.BatchSize, c.RebuildBatchSize))
	}
	if c.PollInterval < 0 || c.RetryDelay < 0 {
		errs = append(errs, errors.New("intervals must not be negative"))
	}
	return errors.Join(errs...)
}

// Projections runs the projectors and answers the read models' queries. It
// is safe for concurrent use.
type Projections struct {
	cfg  Config
	pool *pgxpool.Pool
}

// New returns Projections for cfg, on a migrated database (package schema).
func New(cfg Config) (*Projections, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("projections: %w", err)
	}
	cfg.setDefaults()
	return &Projections{cfg: cfg, pool: cfg.Pool}, nil
}

// Run runs the projectors of every projection until ctx is done, and then
// returns ctx's error. A failed batch is rolled back, reported to
// Config.OnError and retried from the checkpoint after Config.RetryDelay.
// Running several Run at once (in several processes) is safe: batches are
// serialised per projection and a projector whose checkpoint moved under it
// resubscribes; it is just wasted work.
func (p *Projections) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, name := range Names() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.RunProjection(ctx, name)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// RunProjection runs one projection's projector until ctx is done, like Run.
func (p *Projections) RunProjection(ctx context.Context, name string) error {
	proj, err := p.lookup(name)
	if err != nil {
		return err
	}
	for {
		err := p.follow(ctx, proj)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errMoved) {
			continue // a rebuild switched versions, or another projector ran
		}
		if p.cfg.OnError != nil {
			p.cfg.OnError(name, err)
		}
		t := time.NewTimer(p.cfg.RetryDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// errMoved means the active version or its checkpoint is not what the
// projector started from: it resubscribes from the stored checkpoint.
var errMoved = errors.New("projection checkpoint moved")

// follow subscribes after the active version's checkpoint and applies what
// arrives in batches: the subscription hands events over a channel, and
// each transaction takes whatever has queued up, so a projector that is
// behind commits large batches and one that is current commits at once.
func (p *Projections) follow(ctx context.Context, proj projection) error {
	version, cp, err := activeCheckpoint(ctx, p.pool, proj.name())
	if err != nil {
		return err
	}
	subCtx, cancel := context.WithCancel(ctx)
	ch := make(chan eventstore.Envelope, 2*p.cfg.BatchSize)
	errc := make(chan error, 1)
	go func() {
		defer close(ch)
		errc <- p.cfg.Source.Subscribe(subCtx, cp, func(ctx context.Context, e eventstore.Envelope) error {
			select {
			case ch <- e:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	defer func() {
		cancel()
		for range ch { //nolint:revive // drain so the subscription can end
		}
	}()
	for {
		var batch []eventstore.Envelope
		select {
		case e, ok := <-ch:
			if !ok {
				return fmt.Errorf("subscription ended: %w", <-errc)
			}
			batch = append(batch, e)
		case <-ctx.Done():
			return ctx.Err()
		}
	drain:
		for len(batch) < p.cfg.BatchSize {
			select {
			case e, ok := <-ch:
				if !ok {
					break drain
				}
				batch = append(batch, e)
			default:
				break drain
			}
		}
		next, err := p.commit(ctx, proj, version, cp, batch)
		if err != nil {
			return err
		}
		cp = next
	}
}

// commit applies batch to the active version and stores the new checkpoint
// in one transaction, provided the version and checkpoint are still the
// ones the batch follows.
func (p *Projections) commit(ctx context.Context, proj projection, version int, cp eventstore.Cursor, batch []eventstore.Envelope) (eventstore.Cursor, error) {
	var next eventstore.Cursor
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		v, stored, err := lockActive(ctx, tx, proj.name())
		if err != nil {
			return err
		}
		if v != version || stored != cp {
			return errMoved
		}
		next, err = applyBatch(ctx, tx, proj, version, cp, batch)
		return err
	})
	if err != nil {
		return cp, fmt.Errorf("projection %s: apply batch after %s: %w", proj.name(), cp, err)
	}
	return next, nil
}

// applyBatch applies the events of batch that sort after cp and after
// every earlier event of the batch, and stores the cursor of the last one
// as the version's checkpoint, in tx. It returns the new checkpoint (cp
// when nothing was new).
func applyBatch(ctx context.Context, tx pgx.Tx, proj projection, version int, cp eventstore.Cursor, batch []eventstore.Envelope) (eventstore.Cursor, error) {
	fresh := batch[:0:0]
	last := cp
	for _, e := range batch {
		// After the checkpoint and after the last one kept: a batch that
		// repeats an event (or goes back) applies it once.
		if e.Cursor().Compare(last) > 0 {
			fresh = append(fresh, e)
			last = e.Cursor()
		}
	}
	if len(fresh) == 0 {
		return cp, nil
	}
	if err := proj.apply(ctx, tx, version, fresh); err != nil {
		return cp, err
	}
	next := fresh[len(fresh)-1].Cursor()
	if err := saveCheckpoint(ctx, tx, proj.name(), version, next); err != nil {
		return cp, err
	}
	return next, nil
}

// Apply applies events (in global order) to the active version of the
// projection and advances its checkpoint, in one transaction; events at or
// before the checkpoint are ignored. Projectors do this for every batch; it
// is exported for tools and tests that feed events by hand.
func (p *Projections) Apply(ctx context.Context, name string, events []eventstore.Envelope) error {
	proj, err := p.lookup(name)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		v, cp, err := lockActive(ctx, tx, name)
		if err != nil {
			return err
		}
		_, err = applyBatch(ctx, tx, proj, v, cp, events)
		return err
	})
}
