package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/onboard/onboard/audit"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
	"github.com/onboard/onboard/messaging"
)

// sealFlags are verify's sources of seals kept outside the database and
// of the key that signs them.
type sealFlags struct {
	anchor, natsURL, publicKey string
}

func (f sealFlags) given() bool { return f.anchor != "" || f.natsURL != "" || f.publicKey != "" }

// load reads the stored seals, the anchor's and NATS's, and the trusted
// keys: --public-key, ONBOARD_SEAL_PUBLIC_KEY, the anchor's, and the
// public half of ONBOARD_SEAL_KEY.
func (f sealFlags) load(ctx context.Context, store *postgres.Store) (*audit.SealSource, error) {
	src := &audit.SealSource{}
	for _, k := range []struct{ name, value string }{{"--public-key", f.publicKey}, {"ONBOARD_SEAL_PUBLIC_KEY", os.Getenv("ONBOARD_SEAL_PUBLIC_KEY")}} {
		if k.value == "" {
			continue
		}
		pub, err := eventstore.ParsePublicKey(k.value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.name, err)
		}
		src.Keys = append(src.Keys, pub)
	}
	if key, err := loadSealKey(); err != nil {
		return nil, err
	} else if key != nil {
		src.Keys = append(src.Keys, key.Public().(ed25519.PublicKey))
	}
	if f.anchor != "" {
		file, err := os.Open(f.anchor)
		if err != nil {
			return nil, fmt.Errorf("--anchor: %w", err)
		}
		a, pub, err := audit.ReadAnchor(file)
		file.Close()
		if err != nil {
			return nil, fmt.Errorf("--anchor %s: %w", f.anchor, err)
		}
		if pub != nil {
			src.Keys = append(src.Keys, pub)
		}
		src.Kept = append(src.Kept, a.Seals...)
	}
	if f.natsURL != "" {
		nc, err := toolConnect(f.natsURL, "onboard replay verify")
		if err != nil {
			return nil, fmt.Errorf("--nats %s: %w", f.natsURL, err)
		}
		seals, err := messaging.ReadSeals(ctx, nc, messaging.SealConfig{})
		nc.Close()
		if err != nil {
			return nil, fmt.Errorf("--nats %s: %w", f.natsURL, err)
		}
		src.Kept = append(src.Kept, seals...)
	}
	var err error
	src.Stored, err = allSeals(ctx, store)
	return src, err
}

func allSeals(ctx context.Context, store *postgres.Store) ([]eventstore.Seal, error) {
	var out []eventstore.Seal
	for {
		var after int64
		if len(out) > 0 {
			after = out[len(out)-1].Seq
		}
		page, err := store.Seals(ctx, after, 10000)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			return out, nil
		}
		out = append(out, page...)
	}
}

// printSealReport prints the seals' problems, one line each, and the
// events no seal covers yet.
func printSealReport(out io.Writer, r *audit.SealReport) {
	if r == nil {
		return
	}
	for _, p := range r.Problems {
		fmt.Fprintf(out, "FAIL seal %d: %s: %s\n", p.Seq, p.Kind, p.Detail)
		for _, l := range p.Streams {
			fmt.Fprintf(out, "  stream %s: sealed at version %d, found at %d\n", l.StreamID, l.Sealed, l.Found)
		}
	}
	if !r.SignaturesChecked {
		fmt.Fprintln(out, "seal signatures not checked: give --public-key or ONBOARD_SEAL_PUBLIC_KEY")
	}
	if note := r.UnsealedNote(); note != "" {
		fmt.Fprintln(out, note)
	}
	fmt.Fprintf(out, "checked %d seals (last %d)\n", r.Seals, r.Last)
}

func newReplaySealCmd() *cobra.Command {
	var export bool
	cmd := &cobra.Command{
		Use:   "seal [--export]",
		Short: "Show the last seal of the log, or export it as an anchor to keep outside the database",
		Long: "seal prints the last seal the relay wrote. With --export it writes it as an anchor file\n" +
			"(JSON, with the public key when ONBOARD_SEAL_KEY or ONBOARD_SEAL_PUBLIC_KEY is set) to keep\n" +
			"elsewhere; `onboard replay verify --anchor file` then catches seals deleted from the table.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			store, err := openStore(ctx)
			if err != nil {
				return err
			}
			defer store.Close()
			seal, found, err := store.LastSeal(ctx)
			if err != nil {
				return err
			}
			if !found {
				return errors.New("no seal yet: the relay seals the log when it runs with ONBOARD_SEAL_KEY")
			}
			out := cmd.OutOrStdout()
			if !export {
				fmt.Fprintf(out, "seal %d (epoch %d): %d events up to position %s, digest %s, sealed %s by key %s\n",
					seal.Seq, seal.Epoch, seal.Events, seal.Cursor, seal.Digest, seal.SealedAt.Format(time.RFC3339), seal.KeyID)
				return nil
			}
			var pub ed25519.PublicKey
			if v := os.Getenv("ONBOARD_SEAL_PUBLIC_KEY"); v != "" {
				if pub, err = eventstore.ParsePublicKey(v); err != nil {
					return fmt.Errorf("ONBOARD_SEAL_PUBLIC_KEY: %w", err)
				}
			} else if key, err := loadSealKey(); err != nil {
				return err
			} else if key != nil {
				pub = key.Public().(ed25519.PublicKey)
			}
			if pub != nil {
				if err := seal.Check([]ed25519.PublicKey{pub}); err != nil {
					return fmt.Errorf("the last seal does not verify: %w", err)
				}
			}
			return audit.WriteAnchor(out, audit.NewAnchor(seal, pub, time.Now()))
		},
	}
	cmd.Flags().BoolVar(&export, "export", false, "write the last seal as an anchor file (JSON) on stdout")
	return cmd
}
