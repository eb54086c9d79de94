package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/onboard/onboard/messaging"
)

// TestComposeNATSAuth: every NATS node reads the accounts file rendered
// from messaging's permission set (the one the embedded server parses),
// with every password it refers to, and each role that connects does so
// as its own user with that user's password.
func TestComposeNATSAuth(t *testing.T) {
	const file = "./deploy/nats/onboard.conf"
	conf, err := os.ReadFile(filepath.Join("..", "..", file))
	if err != nil {
		t.Fatal(err)
	}
	if string(conf) != messaging.ServerConfig(messaging.StreamConfig{}, messaging.RoleUsers()) {
		t.Fatalf("%s is not messaging.ServerConfig's; go test ./messaging -run TestServerConfigFile -update", file)
	}
	var vars []string
	for _, m := range regexp.MustCompile(`\$(NATS_[A-Z]+_PASSWORD)`).FindAllStringSubmatch(string(conf), -1) {
		vars = append(vars, m[1])
	}
	if len(vars) != len(messaging.Roles()) {
		t.Fatalf("%s refers to %v, want a password per role", file, vars)
	}
	for _, p := range composeProjects(t) {
		t.Run(p.name, func(t *testing.T) {
			cf := p.cf
			if c := cf.Configs["nats-accounts"]; c.File != file {
				t.Fatalf("config nats-accounts is %+v, want the file %s", c, file)
			}
			env := func(service, key string) string {
				return composeMustInterpolate(t, service+" "+key, cf.Services[service].Environment[key])
			}
			nodes := composeNATSNodes(p)
			for _, node := range nodes {
				s := cf.Services[node]
				path, _ := composeFlag(slices.Concat(s.Entrypoint, s.Command), "config")
				if path == "" || !slices.Contains(s.Configs, composeConfigRef{Source: "nats-accounts", Target: path}) {
					t.Errorf("%s: --config %q is not the nats-accounts config", node, path)
				}
				for _, v := range vars {
					if env(node, v) == "" {
						t.Errorf("%s: %s is not set; the server refuses the config without it", node, v)
					}
				}
			}
			for _, role := range composeNATSRoles {
				if user := env(role, "NATS_USER"); user != role {
					t.Errorf("%s: NATS_USER %q, want its own user %q", role, user, role)
				}
				pw := env(role, "NATS_PASSWORD")
				for _, node := range nodes {
					if want := env(node, "NATS_"+strings.ToUpper(role)+"_PASSWORD"); pw != want {
						t.Errorf("%s: NATS_PASSWORD is not the one %s gives user %s", role, node, role)
					}
				}
			}
		})
	}
}
