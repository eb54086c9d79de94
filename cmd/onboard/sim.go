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

// simAdminKeyEnv names the variable holding the simulator's admin key when
// --admin-key is not given.
const simAdminKeyEnv = "SIM_ADMIN_KEY"

func newSimCmd() *cobra.Command {
	var addr, configFile, callback, secret, adminKey string
	var seed uint64
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run the provider simulator (KYC, payments, provisioning, CRM, email) on one port",
		Long: `Serves the five provider contracts under /sim/<provider>, the effects ledger at
/sim/ledger and the admin endpoints at /sim/admin/... (configuration, stats, reset).
--config reads the JSON configuration documented in package providers/sim.
The admin endpoints need the key of --admin-key (default: $SIM_ADMIN_KEY) as
"Authorization: Bearer <key>"; without one they are disabled (403), and the
providers and the ledger are served alone.`,
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
			cfg.AdminKey = adminKey
			if cfg.AdminKey == "" {
				var err error
				if cfg.AdminKey, err = secretEnv(simAdminKeyEnv); err != nil {
					return err
				}
			}
			s, err := sim.New(cfg)
			if err != nil {
				return err
			}
			defer s.Close()
			mux := http.NewServeMux()
			mux.Handle("/sim/", http.StripPrefix("/sim", s))
			// The health check of compose, which needs no key.
			mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			log.Info("simulator serving", "addr", ln.Addr().String(),
				"providers", "http://"+ln.Addr().String()+"/sim/<kyc|payments|provisioning|crm|email>", "ledger", "http://"+ln.Addr().String()+"/sim/ledger")
			if cfg.AdminKey == "" {
				log.Warn("the admin endpoints are disabled (403): set --admin-key or SIM_ADMIN_KEY to configure the simulator at run time")
			}
			return httpapi.Serve(cmd.Context(), httpapi.NewServer(addr, mux), ln, 5*time.Second)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8090", "listen address")
	cmd.Flags().StringVar(&configFile, "config", "", "JSON configuration file")
	cmd.Flags().Uint64Var(&seed, "seed", 0, "random seed (reproducible faults and verdicts)")
	cmd.Flags().StringVar(&callback, "kyc-callback", "", "URL receiving the KYC webhooks, e.g. http://127.0.0.1:8080/v1/webhooks/kyc")
	cmd.Flags().StringVar(&secret, "kyc-secret", "", "secret signing the KYC webhooks (KYC_WEBHOOK_SECRET of onboard)")
	cmd.Flags().StringVar(&adminKey, "admin-key", "", "key the admin endpoints require (default $SIM_ADMIN_KEY; none disables them)")
	return cmd
}
