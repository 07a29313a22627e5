package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The systemd unit passes systemd-analyze verify (no unknown key, no bad
// value: any message is a failure) and its offline security review scores
// at most 2.0 of 10 ("OK").
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("skipping: systemd-analyze not found (Debian's systemd package)")
	}
	unit, err := os.ReadFile("../deploy/switchboard.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify wants ExecStart's binary to exist: point it at the one built
	// for the tests.
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/switchboard", binary(t))
	path := filepath.Join(t.TempDir(), "switchboard.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=true", "--threshold=20", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: exposure over 2.0 (%v):\n%s", err, out)
	}
	if i := bytes.Index(out, []byte("Overall exposure level")); i >= 0 {
		t.Logf("%s", bytes.TrimSpace(out[i:]))
	}
}

// dockerfile is the instructions of a Dockerfile, continuation lines
// joined, comments dropped.
func dockerfile(t *testing.T, path string) [][2]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]string
	var cur string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if cur == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		cur += line
		op, arg, _ := strings.Cut(cur, " ")
		out = append(out, [2]string{strings.ToUpper(op), strings.TrimSpace(arg)})
		cur = ""
	}
	return out
}

// The Dockerfile builds a static binary in one stage and runs it in a
// distroless image as a non-root user, with a health check that the binary
// itself answers: the check's command, run against a real node, exits 0.
func TestDockerfile(t *testing.T) {
	ins := dockerfile(t, "../Dockerfile")
	known := map[string]bool{"FROM": true, "WORKDIR": true, "COPY": true, "RUN": true, "USER": true,
		"ENV": true, "EXPOSE": true, "HEALTHCHECK": true, "STOPSIGNAL": true, "ENTRYPOINT": true, "CMD": true}
	var froms []string
	var user, health, entry string
	static, copied := false, false
	for _, in := range ins {
		op, arg := in[0], in[1]
		if !known[op] {
			t.Errorf("unknown or unexpected instruction %s %s", op, arg)
		}
		switch op {
		case "FROM":
			froms = append(froms, arg)
			user = "" // per stage
		case "RUN":
			static = static || strings.Contains(arg, "CGO_ENABLED=0") && strings.Contains(arg, "go build")
		case "COPY":
			copied = copied || strings.HasPrefix(arg, "--from=build ")
		case "USER":
			user = arg
		case "HEALTHCHECK":
			health = arg
		case "ENTRYPOINT":
			entry = arg
		}
	}
	if len(froms) != 2 || !strings.Contains(froms[0], " AS build") || !strings.Contains(froms[1], "distroless/static") {
		t.Errorf("want a build stage and a distroless static final stage, got %q", froms)
	}
	if !static || !copied {
		t.Errorf("want CGO_ENABLED=0 go build, and the binary copied from the build stage (static %v, copied %v)", static, copied)
	}
	if user == "" || user == "0" || strings.HasPrefix(user, "root") || strings.HasPrefix(user, "0:") {
		t.Errorf("the final stage runs as %q, want a non-root user", user)
	}
	var entryArgs []string
	if err := json.Unmarshal([]byte(entry), &entryArgs); err != nil || len(entryArgs) != 1 {
		t.Errorf("ENTRYPOINT %q: want the exec form with the binary", entry)
	}
	_, cmdJSON, ok := strings.Cut(health, "CMD ")
	var check []string
	if !ok || json.Unmarshal([]byte(cmdJSON), &check) != nil || len(check) < 2 || check[0] != "/switchboard" || check[1] != "health" {
		t.Fatalf("HEALTHCHECK %q: want CMD [\"/switchboard\", \"health\", ...]", health)
	}

	ctx := testContext(t, 30*time.Second)
	s := startServer(t, ctx, "--addr=127.0.0.1:0")
	args := append([]string(nil), check[2:]...)
	for i := range args {
		if args[i] == "127.0.0.1:8080" {
			args[i] = s.Addr
		}
	}
	if out, err := exec.CommandContext(ctx, binary(t), append([]string{"health"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("the health check against a running node: %v\n%s", err, out)
	}
}

// The compose file runs three nodes on one Redis, each with a name of its
// own, secrets only from the environment.
func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile("../deploy/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
			Healthcheck map[string]any    `yaml:"healthcheck"`
			Build       map[string]string `yaml:"build"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	redis, ok := doc.Services["redis"]
	if !ok || !strings.HasPrefix(redis.Image, "redis:") || redis.Healthcheck == nil {
		t.Fatalf("want a redis service with a health check: %+v", redis)
	}
	ids, ports := map[string]bool{}, map[string]bool{}
	nodes := 0
	for name, s := range doc.Services {
		if name == "redis" {
			continue
		}
		nodes++
		env := s.Environment
		if env["SWITCHBOARD_BROKER"] != "redis" || env["SWITCHBOARD_REDIS_URL"] != "redis://redis:6379/0" {
			t.Errorf("%s: not on the compose file's Redis: %v", name, env)
		}
		if s.Build["dockerfile"] != "Dockerfile" {
			t.Errorf("%s: not built from the Dockerfile: %v", name, s.Build)
		}
		for _, k := range []string{"SWITCHBOARD_JWT_SECRET", "SWITCHBOARD_API_KEY"} {
			if !strings.HasPrefix(env[k], "${") {
				t.Errorf("%s: %s is written in the file, want it from the environment", name, k)
			}
		}
		ids[env["SWITCHBOARD_NODE_ID"]] = true
		for _, p := range s.Ports {
			ports[p] = true
		}
	}
	if nodes != 3 || len(ids) != 3 || ids[""] || len(ports) != 3 {
		t.Fatalf("want 3 nodes with their own node ids and ports: nodes %d, ids %v, ports %v", nodes, ids, ports)
	}
}
