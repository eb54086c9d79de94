package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"

	"github.com/onboard/onboard/httpapi"
)

// No Docker engine runs where the tests run, so these tests hold
// docker-compose.yml and the Dockerfile to what the binary really accepts
// instead of starting them: every command must parse with the binary's own
// cobra tree, every role must have its environment, every dependency and
// health check must make sense.

// composeFile models the part of the Compose specification the file uses.
// It is decoded with known fields only, so a misspelt key fails the test
// instead of being silently ignored by Compose.
type composeFile struct {
	Name       string                    `yaml:"name"`
	Services   map[string]composeService `yaml:"services"`
	Volumes    map[string]any            `yaml:"volumes"`
	Configs    map[string]composeConfig  `yaml:"configs"`
	Extensions map[string]any            `yaml:",inline"`
}

type composeService struct {
	Image           string                       `yaml:"image"`
	Build           *composeBuild                `yaml:"build"`
	Restart         string                       `yaml:"restart"`
	ReadOnly        bool                         `yaml:"read_only"`
	Tmpfs           []string                     `yaml:"tmpfs"`
	CapDrop         []string                     `yaml:"cap_drop"`
	SecurityOpt     []string                     `yaml:"security_opt"`
	StopGracePeriod string                       `yaml:"stop_grace_period"`
	Entrypoint      []string                     `yaml:"entrypoint"`
	Command         []string                     `yaml:"command"`
	Environment     map[string]string            `yaml:"environment"`
	Healthcheck     *composeHealthcheck          `yaml:"healthcheck"`
	DependsOn       map[string]composeDependency `yaml:"depends_on"`
	Volumes         []string                     `yaml:"volumes"`
	Profiles        []string                     `yaml:"profiles"`
	Ports           []string                     `yaml:"ports"`
	Configs         []composeConfigRef           `yaml:"configs"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

type composeHealthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	Retries     int      `yaml:"retries"`
	StartPeriod string   `yaml:"start_period"`
}

type composeDependency struct {
	Condition string `yaml:"condition"`
	Required  *bool  `yaml:"required"`
}

type composeConfig struct {
	Content string `yaml:"content"`
	File    string `yaml:"file"`
}

type composeConfigRef struct {
	Source string `yaml:"source"`
	Target string `yaml:"target"`
}

// composeRoles are the roles of `onboard serve`, each run as the service of
// the same name.
var composeRoles = []string{"command", "query", "worker", "relay", "projector"}

// composeProviderEnv are the per-provider base URLs a worker needs unless SIM_URL
// is set.
var composeProviderEnv = []string{"KYC_URL", "PAYMENTS_URL", "PROVISIONING_URL", "CRM_URL", "EMAIL_URL"}

// composeRepoFile reads a file of the repository root (the test runs in
// cmd/onboard).
func composeRepoFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatalf("read %s at the repository root: %v", name, err)
	}
	return b
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	return loadComposeFile(t, "docker-compose.yml")
}

func loadComposeFile(t *testing.T, name string) composeFile {
	t.Helper()
	var cf composeFile
	if err := yaml.Load(composeRepoFile(t, name), &cf, yaml.WithKnownFields()); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(cf.Services) == 0 {
		t.Fatalf("%s: no services", name)
	}
	return cf
}

// composeClusterFile is the override that runs a NATS cluster in place of
// the single node: docker compose -f docker-compose.yml -f <it>.
const composeClusterFile = "docker-compose.cluster.yml"

// composeProject is what Compose runs for one command line: the merged
// files, and the services it starts (those of no profile, as no profile
// is enabled).
type composeProject struct {
	name    string
	cf      composeFile
	enabled map[string]bool
}

// composeProjects are the two ways README.md runs the file: alone (one
// NATS node), and with the cluster override.
func composeProjects(t *testing.T) []composeProject {
	t.Helper()
	base := loadCompose(t)
	cluster := composeMerge(t, loadCompose(t), loadComposeFile(t, composeClusterFile))
	return []composeProject{{"single", base, composeEnabled(base)}, {"cluster", cluster, composeEnabled(cluster)}}
}

func composeEnabled(cf composeFile) map[string]bool {
	on := map[string]bool{}
	for name, s := range cf.Services {
		on[name] = len(s.Profiles) == 0
	}
	return on
}

// composeMerge applies an override file to base as Compose merges files:
// mappings merge key by key (a dependency's entry replaces the one it
// names), command and entrypoint replace, other sequences append, scalars
// replace. Fields whose merge the test does not model (build, health
// check) fail the test when an override sets them on an existing service.
func composeMerge(t *testing.T, base, over composeFile) composeFile {
	t.Helper()
	for name, o := range over.Services {
		b, ok := base.Services[name]
		if !ok {
			base.Services[name] = o
			continue
		}
		bv, ov := reflect.ValueOf(&b).Elem(), reflect.ValueOf(o)
		for i := range ov.NumField() {
			f, field := ov.Field(i), ov.Type().Field(i).Name
			if f.IsZero() {
				continue
			}
			switch {
			case f.Kind() == reflect.Map:
				if bv.Field(i).IsNil() {
					bv.Field(i).Set(reflect.MakeMap(f.Type()))
				}
				for _, k := range f.MapKeys() {
					bv.Field(i).SetMapIndex(k, f.MapIndex(k))
				}
			case f.Kind() == reflect.Slice && (field == "Command" || field == "Entrypoint"):
				bv.Field(i).Set(f)
			case f.Kind() == reflect.Slice:
				bv.Field(i).Set(reflect.AppendSlice(bv.Field(i), f))
			case f.Kind() == reflect.Pointer:
				t.Errorf("%s overrides %s.%s, a merge this test does not model", composeClusterFile, name, field)
			default:
				bv.Field(i).Set(f)
			}
		}
		base.Services[name] = b
	}
	for name, v := range over.Volumes {
		base.Volumes[name] = v
	}
	for name, c := range over.Configs {
		base.Configs[name] = c
	}
	return base
}

// composeInterpolation matches what Compose substitutes: $$, ${VAR}, ${VAR:-def},
// ${VAR-def}, ${VAR:?err}, ${VAR?err}.
var composeInterpolation = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}`)

// composeInterpolate substitutes as Compose does with an empty environment, which
// is how `docker compose up` meets the file on a fresh machine; a required
// variable (${VAR:?...}) without a value is an error.
func composeInterpolate(s string) (string, error) {
	var err error
	out := composeInterpolation.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		g := composeInterpolation.FindStringSubmatch(m)
		switch {
		case strings.HasSuffix(g[2], "-"):
			return g[3]
		case strings.HasSuffix(g[2], "?"):
			err = fmt.Errorf("%s is required: %s", g[1], g[3])
		}
		return ""
	})
	return out, err
}

func composeMustInterpolate(t *testing.T, where, s string) string {
	t.Helper()
	v, err := composeInterpolate(s)
	if err != nil {
		t.Errorf("%s: %v", where, err)
	}
	return v
}

// composeOnboardServices are the services that run the onboard image.
func composeOnboardServices(cf composeFile) []string {
	var out []string
	for name, s := range cf.Services {
		if s.Build != nil {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// composeFlag returns the value of --name in args (as "--name v" or
// "--name=v").
func composeFlag(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func TestComposeServices(t *testing.T) {
	cf := loadCompose(t)
	for _, name := range append([]string{"postgres", "nats", "migrate", "sim"}, composeRoles...) {
		s, ok := cf.Services[name]
		if !ok {
			t.Errorf("service %s is missing", name)
			continue
		}
		if len(s.Profiles) > 0 {
			t.Errorf("service %s is in profiles %v; it must run by default", name, s.Profiles)
		}
	}
	for key := range cf.Extensions {
		if !strings.HasPrefix(key, "x-") {
			t.Errorf("unknown top-level key %q", key)
		}
	}
	if pg := cf.Services["postgres"]; !strings.HasPrefix(pg.Image, "postgres:16") {
		t.Errorf("postgres image %q, want postgres:16", pg.Image)
	}

	// The onboard services all run the one image, built from the
	// repository's Dockerfile.
	images := map[string]bool{}
	for _, name := range composeOnboardServices(cf) {
		s := cf.Services[name]
		if s.Build.Context != "." || (s.Build.Dockerfile != "" && s.Build.Dockerfile != "Dockerfile") {
			t.Errorf("%s: build %+v, want context . and the root Dockerfile", name, *s.Build)
		}
		images[s.Image] = true
	}
	if len(images) != 1 {
		t.Errorf("onboard services use images %v, want one", images)
	}
	for _, name := range append([]string{"migrate", "sim"}, composeRoles...) {
		if cf.Services[name].Build == nil {
			t.Errorf("%s does not run the onboard image (no build)", name)
		}
	}
	for name, s := range cf.Services {
		if s.Image == "" {
			t.Errorf("%s: no image", name)
		}
		if s.Image != "" && !strings.Contains(composeMustInterpolate(t, name+" image", s.Image), ":") {
			t.Errorf("%s: image %q has no tag", name, s.Image)
		}
		if len(s.Command) == 0 && s.Build != nil {
			t.Errorf("%s: no command", name)
		}
	}

	// Published host ports must not collide.
	seen := map[string]string{}
	for name, s := range cf.Services {
		for _, p := range s.Ports {
			_, host, _ := composePort(composeMustInterpolate(t, name+" ports", p))
			if other, dup := seen[host]; dup {
				t.Errorf("%s and %s both publish host port %s", name, other, host)
			}
			seen[host] = name
		}
	}
}

// composePort splits a published port, [ip:]host:container.
func composePort(p string) (ip, host, container string) {
	parts := strings.Split(p, ":")
	if len(parts) == 3 {
		return parts[0], parts[1], parts[2]
	}
	if len(parts) == 2 {
		return "", parts[0], parts[1]
	}
	return "", "", p
}

// TestComposeCommandsMatchTheBinary parses each onboard service's command
// with the binary's own command tree: the subcommand must exist, every flag
// must exist on it and parse, and no stray argument may be left.
func TestComposeCommandsMatchTheBinary(t *testing.T) {
	cf := loadCompose(t)
	for _, name := range composeOnboardServices(cf) {
		t.Run(name, func(t *testing.T) {
			s := cf.Services[name]
			args := make([]string, len(s.Command))
			for i, a := range s.Command {
				args[i] = composeMustInterpolate(t, name+" command", a)
			}
			root := newRootCmd()
			cmd, rest, err := root.Find(args)
			if err != nil || cmd == root || len(args) == 0 || cmd.Name() != args[0] {
				t.Fatalf("command %q: no such subcommand of onboard (err %v)", args, err)
			}
			if err := cmd.ParseFlags(rest); err != nil {
				t.Fatalf("command %q: %v", args, err)
			}
			if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
				t.Fatalf("command %q: %v", args, err)
			}
			if f := cmd.Flags().Lookup("addr"); f != nil {
				host, _, err := net.SplitHostPort(f.Value.String())
				if err != nil || host != "0.0.0.0" {
					t.Errorf("--addr %q: listen on 0.0.0.0 so that other containers reach it", f.Value.String())
				}
			}
		})
	}

	// Each role runs in a service of its own name, and every role runs.
	if got := cf.Services["migrate"].Command; !slices.Equal(got, []string{"migrate"}) {
		t.Errorf("migrate: command %q, want [migrate]", got)
	}
	for _, role := range composeRoles {
		args := cf.Services[role].Command
		roles, _ := composeFlag(args, "roles")
		if len(args) == 0 || args[0] != "serve" || roles != role {
			t.Errorf("%s: command %q, want serve --roles %s", role, args, role)
		}
	}
	sim := cf.Services["sim"].Command
	if len(sim) == 0 || sim[0] != "sim" {
		t.Errorf("sim: command %q, want sim ...", sim)
	}
}

// composeAddr returns the host:port a service's command listens on.
func composeAddr(t *testing.T, s composeService) string {
	t.Helper()
	addr, ok := composeFlag(s.Command, "addr")
	if !ok {
		// The flag's default, as the binary would use it.
		cmd, _, err := newRootCmd().Find(s.Command)
		if err != nil || cmd.Flags().Lookup("addr") == nil {
			return ""
		}
		addr = cmd.Flags().Lookup("addr").DefValue
	}
	return addr
}

func TestComposeEnvironment(t *testing.T) {
	for _, p := range composeProjects(t) {
		t.Run(p.name, func(t *testing.T) { testComposeEnvironment(t, p) })
	}
}

// composeNATSRoles are the roles that use NATS (the others ignore NATS_URL).
var composeNATSRoles = []string{"relay", "worker"}

// composeNATSNodes are the NATS services a project runs.
func composeNATSNodes(p composeProject) []string {
	var out []string
	for name, s := range p.cf.Services {
		if composeIsNATS(s) && p.enabled[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func testComposeEnvironment(t *testing.T, p composeProject) {
	cf := p.cf
	env := func(service, key string) string {
		raw, ok := cf.Services[service].Environment[key]
		if !ok {
			return ""
		}
		return composeMustInterpolate(t, service+" "+key, raw)
	}
	pg := cf.Services["postgres"].Environment

	// DATABASE_URL: the compose Postgres, its user, password and database.
	for _, name := range append([]string{"migrate"}, composeRoles...) {
		raw := env(name, "DATABASE_URL")
		u, err := url.Parse(raw)
		if raw == "" || err != nil {
			t.Errorf("%s: DATABASE_URL %q missing or invalid", name, raw)
			continue
		}
		pass, _ := u.User.Password()
		if u.Hostname() != "postgres" || u.User.Username() != env("postgres", "POSTGRES_USER") ||
			pass != env("postgres", "POSTGRES_PASSWORD") || strings.TrimPrefix(u.Path, "/") != env("postgres", "POSTGRES_DB") {
			t.Errorf("%s: DATABASE_URL %q does not match the postgres service (%v)", name, raw, pg)
		}
	}

	// NATS_URL: the roles that use NATS name every node that runs, at its
	// client port, and nothing else; NATS_REPLICAS is the number of nodes.
	nodes := composeNATSNodes(p)
	for _, name := range composeNATSRoles {
		raw := env(name, "NATS_URL")
		var hosts []string
		for _, one := range strings.Split(raw, ",") {
			u, err := url.Parse(one)
			if err != nil || u.Scheme != "nats" || u.Port() != "4222" || !composeIsNATS(cf.Services[u.Hostname()]) || !p.enabled[u.Hostname()] {
				t.Errorf("%s: NATS_URL %q does not name a NATS service that runs", name, one)
				continue
			}
			hosts = append(hosts, u.Hostname())
		}
		if slices.Sort(hosts); !slices.Equal(hosts, nodes) {
			t.Errorf("%s: NATS_URL %q names %v; the NATS nodes that run are %v", name, raw, hosts, nodes)
		}
		if r := env(name, "NATS_REPLICAS"); r != strconv.Itoa(len(nodes)) {
			t.Errorf("%s: NATS_REPLICAS %q with %d NATS nodes", name, r, len(nodes))
		}
	}

	// API keys: the roles that serve the API parse them as the binary does,
	// and one is an operator's (for the console).
	for _, name := range []string{"command", "query"} {
		keys, err := httpapi.ParseAPIKeys(env(name, "ONBOARD_API_KEYS"))
		if err != nil || len(keys) == 0 {
			t.Errorf("%s: ONBOARD_API_KEYS: %d keys, %v", name, len(keys), err)
		}
		if !slices.ContainsFunc(keys, func(k httpapi.APIKey) bool { return k.Role == httpapi.RoleOperator }) {
			t.Errorf("%s: ONBOARD_API_KEYS has no operator key for the console", name)
		}
	}

	// The KYC webhook: the simulator signs with the secret the command role
	// verifies, and calls back a URL the command role serves.
	secret := env("command", "KYC_WEBHOOK_SECRET")
	if len(secret) < 16 {
		t.Errorf("command: KYC_WEBHOOK_SECRET %q: want at least 16 characters", secret)
	}
	simArgs := cf.Services["sim"].Command
	if got, _ := composeFlag(simArgs, "kyc-secret"); composeMustInterpolate(t, "sim --kyc-secret", got) != secret {
		t.Errorf("sim --kyc-secret %q differs from command's KYC_WEBHOOK_SECRET %q", got, secret)
	}
	callback, _ := composeFlag(simArgs, "kyc-callback")
	if u, err := url.Parse(callback); err != nil || u.Path != "/v1/webhooks/kyc" || !composeServesOn(t, cf, u.Hostname(), u.Port(), "command") {
		t.Errorf("sim --kyc-callback %q: want the command service's /v1/webhooks/kyc", callback)
	}

	// Providers: SIM_URL at the simulator's /sim root, or all five URLs.
	if sim := env("worker", "SIM_URL"); sim != "" {
		u, err := url.Parse(sim)
		if err != nil || u.Path != "/sim" || !composeServesOn(t, cf, u.Hostname(), u.Port(), "sim") {
			t.Errorf("worker: SIM_URL %q: want the sim service's /sim root", sim)
		}
	} else {
		for _, k := range composeProviderEnv {
			if env("worker", k) == "" {
				t.Errorf("worker: neither SIM_URL nor %s is set", k)
			}
		}
	}

	// No value may end up empty on a machine with no variables set.
	for name, s := range cf.Services {
		if !p.enabled[name] {
			continue
		}
		for k, v := range s.Environment {
			if composeMustInterpolate(t, name+" "+k, v) == "" {
				t.Errorf("%s: %s is empty without an environment; give it a default", name, k)
			}
		}
	}
}

func composeIsNATS(s composeService) bool { return strings.HasPrefix(s.Image, "nats:") }

// composeServesOn reports whether host:port is the service named want, listening
// on that port.
func composeServesOn(t *testing.T, cf composeFile, host, port, want string) bool {
	t.Helper()
	s, ok := cf.Services[host]
	if host != want || !ok {
		return false
	}
	_, p, err := net.SplitHostPort(composeMustInterpolate(t, host+" --addr", composeAddr(t, s)))
	return err == nil && p == port
}

func TestComposeHealthAndDependencies(t *testing.T) {
	for _, p := range composeProjects(t) {
		t.Run(p.name, func(t *testing.T) { testComposeHealthAndDependencies(t, p) })
	}
}

func testComposeHealthAndDependencies(t *testing.T, p composeProject) {
	cf := p.cf
	conditions := []string{"service_started", "service_healthy", "service_completed_successfully"}
	for name, s := range cf.Services {
		if !p.enabled[name] {
			continue
		}
		oneShot := name == "migrate"
		switch {
		case oneShot && s.Restart != "no":
			t.Errorf("migrate: restart %q, want \"no\" for a one-shot", s.Restart)
		case !oneShot && (s.Healthcheck == nil || len(s.Healthcheck.Test) < 2):
			t.Errorf("%s: no health check", name)
		case !oneShot && s.Healthcheck.Test[0] != "CMD" && s.Healthcheck.Test[0] != "CMD-SHELL":
			t.Errorf("%s: health check %q must start with CMD or CMD-SHELL", name, s.Healthcheck.Test)
		}
		for dep, d := range s.DependsOn {
			target, ok := cf.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s depends on %s, which does not exist", name, dep)
			case !slices.Contains(conditions, d.Condition):
				t.Errorf("%s depends on %s with condition %q", name, dep, d.Condition)
			case d.Condition == "service_healthy" && target.Healthcheck == nil:
				t.Errorf("%s waits for %s to be healthy, which has no health check", name, dep)
			case !p.enabled[dep] && (d.Required == nil || *d.Required):
				t.Errorf("%s requires %s, which does not run (profiles %v)", name, dep, target.Profiles)
			}
		}
	}

	// The roles start on a migrated database; the migration on a healthy one.
	if d := cf.Services["migrate"].DependsOn["postgres"]; d.Condition != "service_healthy" {
		t.Errorf("migrate must wait for a healthy postgres, has %+v", d)
	}
	for _, name := range composeRoles {
		if d := cf.Services[name].DependsOn["migrate"]; d.Condition != "service_completed_successfully" {
			t.Errorf("%s must wait for migrate to complete successfully, has %+v", name, d)
		}
	}
	for _, name := range composeNATSRoles {
		for _, node := range composeNATSNodes(p) {
			if d := cf.Services[name].DependsOn[node]; d.Condition != "service_healthy" {
				t.Errorf("%s must wait for a healthy %s, has %+v", name, node, d)
			}
		}
	}
	if d := cf.Services["worker"].DependsOn["sim"]; d.Condition != "service_healthy" {
		t.Errorf("worker must wait for a healthy sim, has %+v", d)
	}

	// The onboard image has no shell: its health checks run a probe the
	// Dockerfile installs, against the health routes on the --addr port.
	dockerfile := string(composeRepoFile(t, "Dockerfile"))
	for _, name := range composeOnboardServices(cf) {
		s := cf.Services[name]
		if s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 || !p.enabled[name] {
			continue
		}
		test := s.Healthcheck.Test
		if test[0] != "CMD" || !strings.Contains(dockerfile, test[1]) {
			t.Errorf("%s: health check %q: use CMD with a probe the Dockerfile installs", name, test)
		}
		_, port, _ := net.SplitHostPort(composeMustInterpolate(t, name+" --addr", composeAddr(t, s)))
		probe := test[len(test)-1]
		u, err := url.Parse(probe)
		if err != nil || u.Port() != port {
			t.Errorf("%s: health check probes %q, but the service listens on port %s", name, probe, port)
		}
		if slices.Contains(composeRoles, name) && u != nil && u.Path != "/healthz" && u.Path != "/readyz" {
			t.Errorf("%s: health check probes %q, want /healthz or /readyz", name, probe)
		}
	}
}

func TestComposeVolumesAndNATS(t *testing.T) {
	for _, p := range composeProjects(t) {
		t.Run(p.name, func(t *testing.T) { testComposeVolumesAndNATS(t, p) })
	}
}

func testComposeVolumesAndNATS(t *testing.T, p composeProject) {
	cf := p.cf
	used := map[string]bool{}
	mounts := map[string]map[string]string{} // service → target → volume
	for name, s := range cf.Services {
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				t.Errorf("%s: volume %q: want source:target", name, v)
				continue
			}
			src := parts[0]
			if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				if _, ok := cf.Volumes[src]; !ok {
					t.Errorf("%s mounts volume %s, which is not declared", name, src)
				}
				used[src] = true
			}
			if mounts[name] == nil {
				mounts[name] = map[string]string{}
			}
			mounts[name][parts[1]] = src
		}
	}
	for v := range cf.Volumes {
		if !used[v] {
			t.Errorf("volume %s is declared but not mounted", v)
		}
	}
	if mounts["postgres"]["/var/lib/postgresql/data"] == "" {
		t.Error("postgres: its data directory is not on a volume")
	}

	// NATS: JetStream on file storage kept on a volume; one node alone, or
	// with the cluster override three nodes routed to each other and not
	// the single one.
	for name, s := range cf.Services {
		if !composeIsNATS(s) {
			continue
		}
		args := slices.Concat(s.Entrypoint, s.Command)
		if !slices.Contains(args, "--jetstream") && !slices.Contains(args, "-js") {
			t.Errorf("%s: JetStream is not enabled", name)
		}
		dir, ok := composeFlag(args, "store_dir")
		if !ok || mounts[name][dir] == "" {
			t.Errorf("%s: the JetStream store dir %q is not on a volume", name, dir)
		}
	}
	cluster := composeNATSNodes(p)
	want := map[string][]string{"single": {"nats"}, "cluster": {"nats-1", "nats-2", "nats-3"}}[p.name]
	if !slices.Equal(cluster, want) {
		t.Fatalf("%s: NATS nodes %v run, want %v", p.name, cluster, want)
	}
	if len(cluster) == 1 {
		return
	}
	names := map[string]bool{}
	for _, name := range cluster {
		args := cf.Services[name].Command
		serverName, _ := composeFlag(args, "name")
		clusterName, _ := composeFlag(args, "cluster_name")
		routes, _ := composeFlag(args, "routes")
		if serverName == "" || names[serverName] || clusterName == "" {
			t.Errorf("%s: needs a unique --name and a --cluster_name, has %q, %q", name, serverName, clusterName)
		}
		names[serverName] = true
		for _, other := range cluster {
			if !strings.Contains(routes, "nats://"+other+":6222") {
				t.Errorf("%s: --routes %q misses %s", name, routes, other)
			}
		}
	}
}

func TestComposeGateway(t *testing.T) {
	cf := loadCompose(t)
	for name, s := range cf.Services {
		for _, ref := range s.Configs {
			c, ok := cf.Configs[ref.Source]
			if !ok {
				t.Errorf("%s uses config %s, which is not declared", name, ref.Source)
				continue
			}
			content := composeMustInterpolate(t, "config "+ref.Source, c.Content)
			for _, m := range regexp.MustCompile(`proxy_pass http://([^:;/]+):(\d+)`).FindAllStringSubmatch(content, -1) {
				if !composeServesOn(t, cf, m[1], m[2], m[1]) {
					t.Errorf("config %s proxies to %s:%s, which no service listens on", ref.Source, m[1], m[2])
				}
			}
			if strings.Contains(content, "${") {
				t.Errorf("config %s: an uninterpolated ${ remains; write $$ for nginx variables", ref.Source)
			}
		}
	}
}

// TestComposeSimAdmin: the simulator's port is published, so its admin
// endpoints must have a key: SIM_ADMIN_KEY (which the binary reads) or
// --admin-key, never empty; and its health check must not probe them.
func TestComposeSimAdmin(t *testing.T) {
	cf := loadCompose(t)
	s := cf.Services["sim"]
	key, _ := composeFlag(s.Command, "admin-key")
	if raw, ok := s.Environment[simAdminKeyEnv]; ok && key == "" {
		key = raw
	}
	if key = composeMustInterpolate(t, "sim admin key", key); len(key) < 16 {
		t.Errorf("sim: admin key %q (%s or --admin-key): want one of at least 16 characters", key, simAdminKeyEnv)
	}
	if s.Healthcheck != nil && strings.Contains(strings.Join(s.Healthcheck.Test, " "), "/admin/") {
		t.Errorf("sim: health check %q probes an admin endpoint, which needs the key", s.Healthcheck.Test)
	}
}

// TestComposeClusterOverride: with docker-compose.cluster.yml the single
// NATS node does not run, the cluster's three do, and the roles that use
// NATS wait for and name the cluster only; the override changes nothing
// else of the roles, and its nodes run the single node's image.
func TestComposeClusterOverride(t *testing.T) {
	base, over := loadCompose(t), loadComposeFile(t, composeClusterFile)
	for name, s := range base.Services {
		if len(s.Profiles) > 0 {
			t.Errorf("docker-compose.yml: %s is in profiles %v; the file alone runs everything it holds", name, s.Profiles)
		}
	}
	for name, s := range over.Services {
		_, inBase := base.Services[name]
		switch {
		case composeIsNATS(s) && !inBase:
			if s.Image != base.Services["nats"].Image {
				t.Errorf("%s runs %s, the single node %s", name, s.Image, base.Services["nats"].Image)
			}
		case name == "nats":
			if len(s.Profiles) == 0 {
				t.Error("the override leaves the single nats node on")
			}
		case inBase && slices.Contains(composeNATSRoles, name):
			s.Environment, s.DependsOn = nil, nil
			if !reflect.ValueOf(s).IsZero() {
				t.Errorf("the override changes %s beyond its environment and dependencies: %+v", name, s)
			}
		default:
			t.Errorf("the override touches %s; it should only swap NATS", name)
		}
	}
	var cluster composeProject
	for _, p := range composeProjects(t) {
		if p.name == "cluster" {
			cluster = p
		}
	}
	if cluster.enabled["nats"] {
		t.Error("with the cluster override, the single nats node still runs")
	}
	for _, role := range composeNATSRoles {
		for dep, d := range cluster.cf.Services[role].DependsOn {
			if composeIsNATS(cluster.cf.Services[dep]) && !cluster.enabled[dep] && (d.Required == nil || *d.Required) {
				t.Errorf("%s requires %s, which the cluster override turns off", role, dep)
			}
		}
	}
}

// TestComposePostgresForReplay: the compose Postgres is published on the
// host's loopback, and README.md's DATABASE_URL for `onboard replay`
// reaches it with the compose user, password and database.
func TestComposePostgresForReplay(t *testing.T) {
	cf := loadCompose(t)
	pg := cf.Services["postgres"]
	var published string
	for _, p := range pg.Ports {
		ip, host, container := composePort(composeMustInterpolate(t, "postgres ports", p))
		if container == "5432" {
			if ip != "127.0.0.1" {
				t.Errorf("postgres publishes %q: bind it to 127.0.0.1, its password is a development one", p)
			}
			published = host
		}
	}
	if published == "" {
		t.Fatalf("postgres publishes no port for 5432 (ports %v)", pg.Ports)
	}
	readme := string(composeRepoFile(t, "README.md"))
	m := regexp.MustCompile(`DATABASE_URL='(postgres://[^']+)'\s*\\?\s*onboard replay verify`).FindStringSubmatch(readme)
	if m == nil {
		t.Fatal("README.md shows no DATABASE_URL='...' onboard replay verify for the compose database")
	}
	u, err := url.Parse(m[1])
	if err != nil {
		t.Fatal(err)
	}
	env := func(k string) string { return composeMustInterpolate(t, "postgres "+k, pg.Environment[k]) }
	pass, _ := u.User.Password()
	if u.Hostname() != "127.0.0.1" || u.Port() != published || u.User.Username() != env("POSTGRES_USER") ||
		pass != env("POSTGRES_PASSWORD") || strings.TrimPrefix(u.Path, "/") != env("POSTGRES_DB") || u.Query().Get("sslmode") != "disable" {
		t.Errorf("README.md's DATABASE_URL %s does not reach the compose postgres on 127.0.0.1:%s as %s/%s", m[1], published,
			env("POSTGRES_USER"), env("POSTGRES_DB"))
	}
	if cmd, _, err := newRootCmd().Find([]string{"replay", "verify"}); err != nil || cmd.Name() != "verify" {
		t.Errorf("onboard replay verify: %v", err)
	}
}
