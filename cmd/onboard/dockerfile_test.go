package main

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

// TestDockerfile holds the Dockerfile to what the issue asks of the image:
// a multi-stage build of a static binary (CGO_ENABLED=0) from ./cmd/onboard,
// a distroless or scratch final image that runs as a non-root user, and a
// default command the binary accepts.
func TestDockerfile(t *testing.T) {
	lines := strings.Split(string(composeRepoFile(t, "Dockerfile")), "\n")
	type stage struct {
		from, name string
		body       []string
	}
	var stages []stage
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		fields := strings.Fields(l)
		if strings.EqualFold(fields[0], "FROM") {
			st := stage{from: fields[1]}
			if len(fields) == 4 && strings.EqualFold(fields[2], "AS") {
				st.name = fields[3]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile: %q before the first FROM", l)
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, l)
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a multi-stage build", len(stages))
	}
	var build *stage
	for i := range stages {
		if strings.Contains(strings.Join(stages[i].body, "\n"), "go build") {
			build = &stages[i]
		}
	}
	if build == nil || build.name == "" {
		t.Fatal("Dockerfile: no named stage runs go build")
	}
	body := strings.Join(build.body, " ")
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/onboard"} {
		if !strings.Contains(body, want) {
			t.Errorf("Dockerfile: the build stage lacks %q", want)
		}
	}
	final := stages[len(stages)-1]
	if !strings.Contains(final.from, "distroless") && final.from != "scratch" {
		t.Errorf("Dockerfile: final image %s, want distroless or scratch", final.from)
	}
	finalBody := strings.Join(final.body, "\n")
	if !strings.Contains(finalBody, "COPY --from="+build.name) {
		t.Errorf("Dockerfile: the final stage does not copy the binary from stage %s", build.name)
	}
	user := ""
	for _, l := range final.body {
		if f := strings.Fields(l); strings.EqualFold(f[0], "USER") && len(f) > 1 {
			user = f[1]
		}
	}
	if u := strings.Split(user, ":")[0]; u == "" || u == "root" || u == "0" {
		t.Errorf("Dockerfile: final stage runs as %q, want a non-root USER", user)
	}
	if !strings.Contains(finalBody, "ENTRYPOINT") {
		t.Error("Dockerfile: no ENTRYPOINT")
	}
	// Whatever the Dockerfile's default command is, the binary accepts it.
	for _, l := range final.body {
		if raw, ok := strings.CutPrefix(l, "CMD "); ok {
			var args []string
			if err := yaml.Load([]byte(raw), &args); err != nil {
				t.Fatalf("Dockerfile: CMD %s: use the JSON form: %v", raw, err)
			}
			cmd, rest, err := newRootCmd().Find(args)
			if err != nil || cmd.Name() != args[0] {
				t.Fatalf("Dockerfile: CMD %q: no such subcommand", args)
			}
			if err := cmd.ParseFlags(rest); err != nil {
				t.Errorf("Dockerfile: CMD %q: %v", args, err)
			}
		}
	}
}
