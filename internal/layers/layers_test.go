package layers

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/switchboardhq/switchboard"

// rule says what one package may import of the project (directly; what
// those import is checked by their own rules) and which third-party
// modules must not be among its dependencies at all (transitively).
type rule struct {
	project   []string // relative to the module; "" is the root package
	forbidden []string // import path prefixes
}

// Third-party modules that belong to the edges: the server and the broker
// packages, never the library's core.
var (
	brokers = []string{"github.com/redis/", "github.com/nats-io/"}
	edges   = append([]string{"github.com/prometheus/", "github.com/golang-jwt/", "go.yaml.in/", "gopkg.in/yaml"}, brokers...)
	leaves  = append([]string{"github.com/lesismal/"}, edges...)
)

// rules is the picture of docs/design.md, bottom up.
var rules = map[string]rule{
	"internal/wsframe":   {forbidden: leaves},
	"internal/protocol":  {forbidden: leaves},
	"internal/sse":       {forbidden: leaves},
	"internal/testkit":   {forbidden: leaves},
	"history":            {forbidden: leaves},
	"presence":           {project: []string{"internal/protocol"}, forbidden: leaves},
	"internal/transport": {forbidden: edges},
	"": {
		project:   []string{"history", "presence", "internal/transport", "internal/protocol", "internal/sse", "internal/wsframe"},
		forbidden: edges,
	},
	"redisbroker":           {project: []string{"", "history"}, forbidden: []string{"github.com/nats-io/", "github.com/prometheus/"}},
	"natsbroker":            {project: []string{"", "history"}, forbidden: []string{"github.com/redis/", "github.com/prometheus/"}},
	"internal/brokertest":   {project: []string{"", "internal/testkit"}, forbidden: edges},
	"internal/loadgen":      {project: []string{"client"}, forbidden: leaves},
	"internal/floor":        {forbidden: edges},
	"internal/rediscluster": {forbidden: []string{"github.com/nats-io/", "github.com/prometheus/", "github.com/lesismal/"}},
	"web":                   {forbidden: leaves},
	"server/config":         {forbidden: append([]string{"github.com/lesismal/"}, brokers...)},
	"server": {
		project: []string{"", "internal/protocol", "natsbroker", "redisbroker", "server/config", "web"},
	},
	"client":          {forbidden: leaves}, // the wire protocol only: no server code, no nbio
	"cmd/switchboard": {project: []string{"internal/floor", "internal/loadgen", "internal/rediscluster", "server", "server/config"}},
	"e2e":             {},
}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	cmd := exec.Command(gobin, "list", "-json", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// rel is path relative to the module ("" for the root), and whether it is
// the module's at all.
func rel(path string) (string, bool) {
	if path == module {
		return "", true
	}
	r, ok := strings.CutPrefix(path, module+"/")
	return r, ok
}

func name(r string) string {
	if r == "" {
		return "the root package"
	}
	return r
}

// TestImportsGoOneWay fails when a package imports a project package its
// rule does not name, or depends on a forbidden third-party module: the
// root package importing a broker, metrics or the server; presence or
// history importing the root package; a transport knowing of rooms.
func TestImportsGoOneWay(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < len(rules)/2 {
		t.Fatalf("go list found %d packages; the module has more", len(pkgs))
	}
	for _, p := range pkgs {
		r, _ := rel(p.ImportPath)
		if r == "internal/layers" {
			continue
		}
		rl, ok := rules[r]
		if !ok {
			t.Errorf("%s has no rule in internal/layers: add it, with what it may import", name(r))
			continue
		}
		for _, imp := range p.Imports {
			if ir, mine := rel(imp); mine && !slices.Contains(rl.project, ir) {
				t.Errorf("%s imports %s, which its rule does not allow (see docs/design.md)", name(r), name(ir))
			}
		}
		for _, dep := range p.Deps {
			for _, bad := range rl.forbidden {
				if strings.HasPrefix(dep, bad) {
					t.Errorf("%s depends on %s, which must stay outside it", name(r), dep)
				}
			}
		}
	}
}

// The check itself catches what it is for: a rule that forbids what a
// package does import is reported.
func TestImportRulesBite(t *testing.T) {
	var root pkg
	for _, p := range listPackages(t) {
		if p.ImportPath == module {
			root = p
		}
	}
	if !slices.Contains(root.Imports, module+"/presence") || !slices.Contains(root.Deps, "github.com/lesismal/nbio") {
		t.Fatalf("go list gave the root package imports %v: the check would see nothing", root.Imports)
	}
}
