package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/onboard/onboard/audit"
	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
	"github.com/onboard/onboard/eventstore"
	"github.com/onboard/onboard/eventstore/postgres"
)

// newEraseCmd is `onboard erase ID`: a data subject's erasure from the
// command line, as POST /v1/customers/{id}/erasure does it.
func newEraseCmd() *cobra.Command {
	var reason, operator string
	cmd := &cobra.Command{
		Use:   "erase <customer id> --reason TEXT",
		Short: "Erase a customer's personal data (GDPR Art. 17)",
		Long: `erase destroys the customer's data key, so that every personal field of its
events reads "[erased]", records personal_data_erased, scrubs the read models
(the projectors apply the event), frees the email for a new signup, and has
the worker ask the CRM and the email provider to delete what they hold. A
customer still onboarding is cancelled first, with compensation. Running it
again is safe. Needs DATABASE_URL and ONBOARD_MASTER_KEY (or _FILE).`,
		Args: exactArgs(1, "one customer id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseCustomerID(args[0])
			if err != nil {
				return err
			}
			if reason == "" {
				return errors.New("--reason: say why (the request's reference)")
			}
			master, err := loadMasterKey()
			if err != nil {
				return err
			}
			if master == nil {
				return errors.New("ONBOARD_MASTER_KEY: erasure needs the master key of the personal data (or ONBOARD_MASTER_KEY_FILE)")
			}
			ctx := cmd.Context()
			url, err := databaseURL()
			if err != nil {
				return err
			}
			pool, err := openPool(ctx, url, 0)
			if err != nil {
				return err
			}
			defer pool.Close()
			if err := checkSchema(ctx, pool); err != nil {
				return err
			}
			store, err := postgres.New(pool, postgres.Config{})
			if err != nil {
				return err
			}
			defer store.Close()
			keys, err := postgres.NewKeyStore(pool, master)
			if err != nil {
				return err
			}
			cmds, err := commands.New(commands.Config{Store: store, Keys: keys})
			if err != nil {
				return err
			}
			res, err := cmds.Erase(ctx, id, operator, reason, commands.Meta{Actor: "operator:" + operator})
			if errors.Is(err, domain.ErrDuplicateCommand) {
				fmt.Fprintf(cmd.OutOrStdout(), "customer %s: personal data already erased; its key is destroyed\n", id)
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "customer %s: personal data erased (state %s, version %d)\n", id, res.State, res.Version)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why: the request's reference (required)")
	cmd.Flags().StringVar(&operator, "operator", "cli", "who erases, as recorded on the event")
	return cmd
}

// auditKeys decrypts personal data in replays and diffs when the master
// key is set; without it encrypted fields show as [encrypted].
func auditKeys(store *postgres.Store) ([]audit.Option, error) {
	keys, err := toolKeys(store)
	if err != nil || keys == nil {
		return nil, err
	}
	return []audit.Option{audit.WithKeys(keys)}, nil
}

// toolKeys is the key store of a command-line tool that reads personal
// data (replay, diff, explain) under the master key, or nil without one.
func toolKeys(store *postgres.Store) (eventstore.KeyReader, error) {
	master, err := loadMasterKey()
	if err != nil || master == nil {
		return nil, err
	}
	return postgres.NewKeyStore(store.Pool(), master)
}
