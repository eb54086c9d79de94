package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/onboard/onboard/httpapi"
	"github.com/onboard/onboard/providers/sim"
)

func newSimCmd() *cobra.Command {
	var addr, configFile, callback, secret string
	var seed uint64
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run the provider simulator (KYC, payments, provisioning, CRM, email) on one port",
		Long: `Serves the five provider contracts under /sim/<provider>, the effects ledger at
/sim/ledger and the admin endpoints at /sim/admin/config (GET/PUT). --config reads the
JSON configuration documented in package external/sim.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg sim.Config
			if configFile != "" {
				raw, err := os.ReadFile(configFile)
				if err != nil {
					return err
				}
				if err := json.Unmarshal(raw, &cfg); err != nil {
					return fmt.Errorf("--config %s: %w", configFile, err)
				}
			}
			if cmd.Flags().Changed("seed") {
				cfg.Seed = seed
			}
			if callback != "" {
				cfg.KYC.CallbackURL = callback
			}
			if secret != "" {
				cfg.KYC.WebhookSecret = secret
			}
			s, err := sim.New(cfg)
			if err != nil {
				return err
			}
			defer s.Close()
			mux := http.NewServeMux()
			mux.Handle("/sim/", http.StripPrefix("/sim", s))
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			slog.New(slog.NewJSONHandler(os.Stderr, nil)).Info("simulator serving", "addr", ln.Addr().String(),
				"providers", "http://"+ln.Addr().String()+"/sim/<kyc|payments|provisioning|crm|email>", "ledger", "http://"+ln.Addr().String()+"/sim/ledger")
			return httpapi.Serve(cmd.Context(), httpapi.NewServer(addr, mux), ln, 5*time.Second)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8090", "listen address")
	cmd.Flags().StringVar(&configFile, "config", "", "JSON configuration file")
	cmd.Flags().Uint64Var(&seed, "seed", 0, "random seed (reproducible faults and verdicts)")
	cmd.Flags().StringVar(&callback, "kyc-callback", "", "URL receiving the KYC webhooks, e.g. http://127.0.0.1:8080/v1/webhooks/kyc")
	cmd.Flags().StringVar(&secret, "kyc-secret", "", "secret signing the KYC webhooks (KYC_WEBHOOK_SECRET of onboard)")
	return cmd
}
