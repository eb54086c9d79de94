package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/onboard/onboard/eventstore"
)

// The statements on seals and store_epochs (schema/migrations/00008).

var _ eventstore.SealStore = (*Store)(nil)

// AppendSeal stores s with a synchronous commit, whatever the session's
// setting: a seal that a crash could take back would let a restored store
// pass for a complete one.
func (s *Store) AppendSeal(ctx context.Context, seal eventstore.Seal) error {
	heads := eventstore.EncodeHeads(seal.Heads)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = on`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO seals (seq, epoch, system_identifier, cursor, events, digest, heads,
			heads_digest, sealed_at, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			seal.Seq, seal.Epoch, seal.SystemID, seal.Cursor, seal.Events, seal.Digest[:], heads,
			seal.HeadsDigest[:], seal.SealedAt, seal.KeyID, seal.Signature)
		return err
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == codeUniqueViolated {
		return fmt.Errorf("append seal %d: %w", seal.Seq, eventstore.ErrSealExists)
	}
	if err != nil {
		return fmt.Errorf("append seal %d: %w", seal.Seq, err)
	}
	return nil
}

const sealColumns = `seq, epoch, system_identifier, cursor, events, digest, heads, heads_digest, sealed_at, key_id, signature`

func scanSeal(row pgx.Row) (eventstore.Seal, error) {
	var (
		s                 eventstore.Seal
		digest, hd, heads []byte
	)
	if err := row.Scan(&s.Seq, &s.Epoch, &s.SystemID, &s.Cursor, &s.Events, &digest, &heads, &hd,
		&s.SealedAt, &s.KeyID, &s.Signature); err != nil {
		return s, err
	}
	copy(s.Digest[:], digest)
	copy(s.HeadsDigest[:], hd)
	s.SealedAt = s.SealedAt.UTC()
	var err error
	if s.Heads, err = eventstore.DecodeHeads(heads); err != nil {
		return s, fmt.Errorf("seal %d: %w", s.Seq, err)
	}
	return s, nil
}

// Seals returns the seals with seq > afterSeq in seq order, at most limit.
func (s *Store) Seals(ctx context.Context, afterSeq int64, limit int) ([]eventstore.Seal, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+sealColumns+` FROM seals WHERE seq > $1 ORDER BY seq LIMIT $2`, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("read seals: %w", err)
	}
	defer rows.Close()
	var out []eventstore.Seal
	for rows.Next() {
		seal, err := scanSeal(rows)
		if err != nil {
			return nil, fmt.Errorf("read seals: %w", err)
		}
		out = append(out, seal)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read seals: %w", err)
	}
	return out, nil
}

// LastSeal returns the seal with the highest seq.
func (s *Store) LastSeal(ctx context.Context) (eventstore.Seal, bool, error) {
	seal, err := scanSeal(s.pool.QueryRow(ctx, `SELECT `+sealColumns+` FROM seals ORDER BY seq DESC LIMIT 1`))
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Seal{}, false, nil
	}
	if err != nil {
		return seal, false, fmt.Errorf("read the last seal: %w", err)
	}
	return seal, true, nil
}

// Identity returns the latest epoch and the cluster's system identifier
// as recorded with it.
func (s *Store) Identity(ctx context.Context) (eventstore.StoreIdentity, error) {
	var (
		id  eventstore.StoreIdentity
		sys int64
	)
	err := s.pool.QueryRow(ctx, `SELECT epoch, system_identifier FROM store_epochs ORDER BY epoch DESC LIMIT 1`).Scan(&id.Epoch, &sys)
	if err != nil {
		return id, fmt.Errorf("read the store's identity: %w", err)
	}
	id.SystemID = strconv.FormatUint(uint64(sys), 10)
	id.ClusterID = strconv.FormatUint(uint64(s.clusterID(ctx)), 10)
	return id, nil
}

// clusterID returns the cluster's system identifier, 0 when the role may
// not read it.
func (s *Store) clusterID(ctx context.Context) int64 {
	var sys int64
	if err := s.pool.QueryRow(ctx, `SELECT system_identifier FROM pg_control_system()`).Scan(&sys); err != nil {
		return 0
	}
	return sys
}

// NewEpoch records the next epoch with the cluster's current system
// identifier (0 when the role may not read it).
func (s *Store) NewEpoch(ctx context.Context, reason string) (eventstore.StoreIdentity, error) {
	sys := s.clusterID(ctx)
	var id eventstore.StoreIdentity
	err := s.pool.QueryRow(ctx, `INSERT INTO store_epochs (epoch, system_identifier, reason)
		SELECT coalesce(max(epoch), 0) + 1, $1, $2 FROM store_epochs RETURNING epoch`, sys, reason).Scan(&id.Epoch)
	if err != nil {
		return id, fmt.Errorf("start a new epoch: %w", err)
	}
	id.SystemID = strconv.FormatUint(uint64(sys), 10)
	id.ClusterID = id.SystemID
	return id, nil
}
