package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestInteropWithNodeWS drives the server with the npm package ws, a client
// implementation independent of this project; node/interop.mjs holds the
// checks (see the header of that file).
func TestInteropWithNodeWS(t *testing.T) {
	nodeBin, errNode := exec.LookPath("node")
	npmBin, errNpm := exec.LookPath("npm")
	if errNode != nil || errNpm != nil {
		t.Skipf("interop with the npm package ws needs node and npm on PATH (node: %v, npm: %v)", errNode, errNpm)
	}
	ctx := testContext(t, 4*time.Minute)
	dir, err := filepath.Abs("node")
	if err != nil {
		t.Fatal(err)
	}
	ensureNodeModules(t, ctx, npmBin, dir)

	srv := startServer(t, ctx, "--addr", "127.0.0.1:0", "--auth", "none",
		"--ping-interval", "1s", "--pong-timeout", "1s", "--max-message-bytes", "1024")

	runCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(runCtx, nodeBin, "interop.mjs", "ws://"+srv.Addr)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "EXPECT_PING_INTERVAL=1", "EXPECT_PONG_TIMEOUT=1", "EXPECT_MAX_MESSAGE_BYTES=1024")
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 5 * time.Second
	setProcessGroup(cmd)
	err = cmd.Run()
	killProcessGroup(cmd)
	t.Logf("node interop.mjs output:\n%s", out.String())
	if runCtx.Err() != nil {
		t.Fatalf("node interop.mjs did not finish in time: %v", runCtx.Err())
	}
	var fails []string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "FAIL") {
			fails = append(fails, line)
		}
	}
	if err != nil || len(fails) > 0 {
		t.Fatalf("node interop.mjs failed (%v):\n%s", err, strings.Join(fails, "\n"))
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	summary := lines[len(lines)-1]
	if !regexp.MustCompile(`^[1-9][0-9]* passed, 0 failed$`).MatchString(summary) {
		t.Fatalf("last line %q, want \"N passed, 0 failed\"", summary)
	}
}

// ensureNodeModules runs `npm ci` in dir unless node_modules already holds
// the exact ws version package.json pins.
func ensureNodeModules(t *testing.T, ctx context.Context, npmBin, dir string) {
	t.Helper()
	want := pinnedVersion(t, filepath.Join(dir, "package.json"), "ws")
	if got := installedVersion(filepath.Join(dir, "node_modules", "ws", "package.json")); got == want {
		return
	}
	npmCI(t, ctx, npmBin, dir)
	if got := installedVersion(filepath.Join(dir, "node_modules", "ws", "package.json")); got != want {
		t.Fatalf("after npm ci, node_modules has ws %q, package.json pins %q", got, want)
	}
}

func pinnedVersion(t *testing.T, packageJSON, dep string) string {
	t.Helper()
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	b, err := os.ReadFile(packageJSON)
	if err == nil {
		err = json.Unmarshal(b, &pkg)
	}
	if err != nil {
		t.Fatalf("read %s: %v", packageJSON, err)
	}
	v := pkg.Dependencies[dep]
	if !regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`).MatchString(v) {
		t.Fatalf("%s: %s must be pinned to an exact version, is %q", packageJSON, dep, v)
	}
	return v
}

func installedVersion(packageJSON string) string {
	b, err := os.ReadFile(packageJSON)
	if err != nil {
		return ""
	}
	var pkg struct {
		Version string `json:"version"`
	}
	if json.Unmarshal(b, &pkg) != nil {
		return ""
	}
	return pkg.Version
}
