package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/onboard/onboard/audit"
	"github.com/onboard/onboard/eventstore"
)

// testSealKey is a fixed key, so that the golden anchor stays valid.
var testSealKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

func testPub() ed25519.PublicKey { return testSealKey.Public().(ed25519.PublicKey) }

// sealLog seals the log after every `every` events and at its end, as the
// relay does (the relay's own seals are checked against the log in
// package messaging).
func sealLog(t *testing.T, db testDB, every int) []eventstore.Seal {
	t.Helper()
	ctx := context.Background()
	db.waitSafe(t)
	id, err := db.store.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last, _, err := db.store.LastSeal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := last.At()
	var (
		d     = last.Digest
		n     = last.Events
		heads = map[string]eventstore.Head{}
		out   []eventstore.Seal
	)
	seal := func() {
		if len(heads) == 0 {
			return
		}
		s := eventstore.Seal{Seq: last.Seq + 1, Epoch: id.Epoch, SystemID: id.SystemID, Cursor: cur.String(),
			Events: n, Digest: d, SealedAt: time.Now()}
		for _, h := range heads {
			s.Heads = append(s.Heads, h)
		}
		s.Sign(testSealKey)
		if err := db.store.AppendSeal(ctx, s); err != nil {
			t.Fatal(err)
		}
		last, heads = s, map[string]eventstore.Head{}
		out = append(out, s)
	}
	for {
		events, err := db.store.ReadAll(ctx, cur, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) == 0 {
			break
		}
		for _, e := range events {
			d, n, cur = d.Next(e.Hash), n+1, e.Cursor()
			heads[e.StreamID] = eventstore.Head{StreamID: e.StreamID, Version: e.Version, Hash: e.Hash}
			if int(n)%every == 0 {
				seal()
			}
		}
	}
	seal()
	return out
}

// replica runs statements as a superuser with every trigger off
// (session_replication_role = replica), as an attacker would.
func (db testDB) replica(t *testing.T, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		tag, err := conn.Exec(ctx, s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if tag.RowsAffected() == 0 {
			t.Fatalf("%s: no row affected", s)
		}
	}
}

// verifySealed verifies the whole store; with seals, it reads them first.
func verifySealed(t *testing.T, db testDB, withSeals bool, kept ...eventstore.Seal) audit.Report {
	t.Helper()
	ctx := context.Background()
	opts := audit.VerifyOptions{PageSize: 50}
	if withSeals {
		stored, err := db.store.Seals(ctx, 0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		opts.Seals = &audit.SealSource{Stored: stored, Kept: kept, Keys: []ed25519.PublicKey{testPub()}}
	}
	opts.Until = db.lastCommitted(t)
	rep, err := audit.VerifyAll(ctx, db.store, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// newestStream returns the stream of the newest event and its version.
func (db testDB) newestStream(t *testing.T) (string, int64) {
	var id string
	var v int64
	err := db.store.Pool().QueryRow(context.Background(),
		`SELECT stream_id, version FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1`).Scan(&id, &v)
	if err != nil {
		t.Fatal(err)
	}
	return id, v
}

func hasLoss(p audit.SealProblem, stream string, sealed, found int64) bool {
	for _, l := range p.Streams {
		if l.StreamID == stream && l.Sealed == sealed && l.Found == found {
			return true
		}
	}
	return false
}

// TestSealsIntact: a sealed store verifies with no seal problem, and
// events appended after the last seal are reported as not sealed yet.
func TestSealsIntact(t *testing.T) {
	db := newTestDB(t)
	golden := seedGolden(t, db)
	seals := sealLog(t, db, 13)
	rep := verifySealed(t, db, true)
	if rep.Err() != nil || rep.Seals.Seals != len(seals) || rep.Seals.Unsealed != 0 || !rep.Seals.SignaturesChecked {
		t.Fatalf("intact: %v %+v", rep.Err(), rep.Seals)
	}
	appendHistory(t, db.store, golden["happy"].withNewID())
	rep = verifySealed(t, db, true)
	n := int64(len(golden["happy"].Events))
	want := " events after position " + seals[len(seals)-1].Cursor + " are not sealed yet"
	if rep.Err() != nil || rep.Seals.Unsealed != n || !strings.HasSuffix(rep.Seals.UnsealedNote(), want) {
		t.Fatalf("after appending %d: %v %q", n, rep.Err(), rep.Seals.UnsealedNote())
	}
}

// TestSealsCatchRemovedStreamHead (a): the newest events of one stream
// removed leave its chain intact; the seals name the stream.
func TestSealsCatchRemovedStreamHead(t *testing.T) {
	db := newTestDB(t)
	golden := seedGolden(t, db)
	sealLog(t, db, 10)
	stream := audit.CustomerStreamID(golden["happy"].CustomerID)
	v := int64(len(golden["happy"].Events))
	db.replica(t, `DELETE FROM events WHERE stream_id = '`+stream+`' AND version >= `+itoa(v-1))
	if rep := verifySealed(t, db, false); rep.Err() != nil {
		t.Fatalf("without seals the chain check already fails: %v", rep.Err())
	}
	rep := verifySealed(t, db, true)
	if rep.Err() == nil || len(rep.Seals.Problems) == 0 {
		t.Fatal("with seals: no problem found")
	}
	p := rep.Seals.Problems[0]
	if p.Kind != audit.SealLogChanged || !hasLoss(p, stream, v, v-2) || p.Position == "" || p.After == "" {
		t.Fatalf("first problem %+v, want log_changed naming %s at %d, found %d", p, stream, v, v-2)
	}
}

// TestSealsCatchRemovedStream (b): a whole stream removed.
func TestSealsCatchRemovedStream(t *testing.T) {
	db := newTestDB(t)
	golden := seedGolden(t, db)
	sealLog(t, db, 10)
	stream := audit.CustomerStreamID(golden["rejected"].CustomerID)
	db.replica(t, `DELETE FROM events WHERE stream_id = '`+stream+`'`)
	if rep := verifySealed(t, db, false); rep.Err() != nil {
		t.Fatalf("without seals the chain check already fails: %v", rep.Err())
	}
	rep := verifySealed(t, db, true)
	if rep.Err() == nil {
		t.Fatal("with seals: no problem found")
	}
	p := rep.Seals.Problems[0]
	if p.Kind != audit.SealLogChanged || !hasLoss(p, stream, int64(len(golden["rejected"].Events)), 0) {
		// The first seal after the stream's first event names it at the
		// version it then had.
		found := false
		for _, l := range p.Streams {
			found = found || l.StreamID == stream && l.Found == 0
		}
		if !found {
			t.Fatalf("first problem %+v, want log_changed naming %s as gone", p, stream)
		}
	}
}

// TestSealsCatchTruncatedLog (c): the log's newest events removed, as a
// restore from an older backup would, while a seal covers them.
func TestSealsCatchTruncatedLog(t *testing.T) {
	db := newTestDB(t)
	seedGolden(t, db)
	sealLog(t, db, 10)
	stream, v := db.newestStream(t)
	db.replica(t, `DELETE FROM events WHERE (transaction_id, position) IN
		(SELECT transaction_id, position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 3)`)
	if rep := verifySealed(t, db, false); rep.Err() != nil {
		t.Fatalf("without seals the chain check already fails: %v", rep.Err())
	}
	rep := verifySealed(t, db, true)
	if rep.Err() == nil {
		t.Fatal("with seals: no problem found")
	}
	p := rep.Seals.Problems[len(rep.Seals.Problems)-1]
	if p.Kind != audit.SealLogTruncated {
		t.Fatalf("problems %+v, want log_truncated last", rep.Seals.Problems)
	}
	named := false
	for _, q := range rep.Seals.Problems {
		for _, l := range q.Streams {
			named = named || l.StreamID == stream && l.Sealed == v
		}
	}
	if !named {
		t.Fatalf("problems %+v do not name %s", rep.Seals.Problems, stream)
	}
}

// TestSealsCatchForgedSeal (d): a seal altered to match a changed log, and
// one signed by another key, do not verify.
func TestSealsCatchForgedSeal(t *testing.T) {
	for _, tc := range []struct {
		name string
		sql  string
	}{
		{"altered digest", `UPDATE seals SET digest = sha256(digest) WHERE seq = 2`},
		{"altered count", `UPDATE seals SET events = events - 1 WHERE seq = 2`},
		{"other key", `UPDATE seals SET key_id = 'deadbeefdeadbeef' WHERE seq = 2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := newTestDB(t)
			seedGolden(t, db)
			sealLog(t, db, 10)
			if rep := verifySealed(t, db, true); rep.Err() != nil {
				t.Fatalf("before: %v", rep.Err())
			}
			db.replica(t, tc.sql)
			rep := verifySealed(t, db, true)
			if rep.Err() == nil || rep.Seals.Problems[0].Kind != audit.SealBad || rep.Seals.Problems[0].Seq != 2 {
				t.Fatalf("problems %+v, want seal_bad of seal 2", rep.Seals)
			}
		})
	}
}

// TestSealsCatchDeletedSealsWithAnchor (e): the newest events removed
// together with the seals that cover them pass the table's seals; the
// anchor kept outside the database catches it.
func TestSealsCatchDeletedSealsWithAnchor(t *testing.T) {
	db := newTestDB(t)
	seedGolden(t, db)
	seals := sealLog(t, db, 10)
	var buf bytes.Buffer
	if err := audit.WriteAnchor(&buf, audit.NewAnchor(seals[len(seals)-1], testPub(), time.Now())); err != nil {
		t.Fatal(err)
	}
	keep := seals[len(seals)-3]
	at, _ := keep.At()
	db.replica(t,
		`DELETE FROM events WHERE (transaction_id::text::bigint, position) > (`+itoa(int64(at.TransactionID))+`, `+itoa(at.Position)+`)`,
		`DELETE FROM seals WHERE seq > `+itoa(keep.Seq))
	if rep := verifySealed(t, db, true); rep.Err() != nil || rep.Seals.Unsealed != 0 {
		t.Fatalf("without the anchor the table's seals already fail: %v %+v", rep.Err(), rep.Seals)
	}
	anchor, pub, err := audit.ReadAnchor(&buf)
	if err != nil || !pub.Equal(testPub()) {
		t.Fatal(err)
	}
	rep := verifySealed(t, db, true, anchor.Seals...)
	if rep.Err() == nil {
		t.Fatal("with the anchor: no problem found")
	}
	kinds := map[audit.SealProblemKind]bool{}
	for _, p := range rep.Seals.Problems {
		kinds[p.Kind] = true
	}
	if !kinds[audit.SealMissing] || !kinds[audit.SealLogTruncated] {
		t.Fatalf("problems %+v, want seal_missing and log_truncated", rep.Seals.Problems)
	}
}

// TestGoldenAnchor holds the anchor file's format: the committed file
// reads, its seal verifies with its key, and writing it again gives the
// same bytes.
func TestGoldenAnchor(t *testing.T) {
	path := filepath.Join("testdata", "anchor.json")
	if *update {
		s := eventstore.Seal{Seq: 42, Epoch: 1, SystemID: "7345012345678901234", Cursor: "1234/5678", Events: 5678,
			Digest: eventstore.Digest{}.Next(bytes.Repeat([]byte{1}, 32)), SealedAt: time.Date(2026, 11, 25, 15, 4, 5, 0, time.UTC),
			Heads: []eventstore.Head{{StreamID: "customer-0192f0c1-0000-7000-8000-000000000001", Version: 12, Hash: bytes.Repeat([]byte{2}, 32)}}}
		s.Sign(testSealKey)
		var buf bytes.Buffer
		if err := audit.WriteAnchor(&buf, audit.NewAnchor(s, testPub(), time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC))); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, pub, err := audit.ReadAnchor(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Seals[0].Check([]ed25519.PublicKey{pub}); err != nil || !pub.Equal(testPub()) {
		t.Fatalf("golden anchor's seal: %v", err)
	}
	var again bytes.Buffer
	if err := audit.WriteAnchor(&again, a); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), raw) {
		t.Fatalf("writing the golden anchor again changes it:\n%s", again.String())
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// withNewID is h as another customer's history.
func (h History) withNewID() History {
	h.CustomerID = uuid.Must(uuid.NewV7())
	return h
}
