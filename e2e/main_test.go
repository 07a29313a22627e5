// Package e2e runs the real switchboard binary as a child process and talks
// to it over real sockets, the way independent clients do.
//
// The binary is built once per test run (lazily, so a run where every test
// skips builds nothing) into a temporary directory that TestMain removes.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var (
	binDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	// The test binary doubles as a small client run inside a network
	// namespace (see netns_linux_test.go).
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "switchboard-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	return m.Run()
}

// binary returns the path of the switchboard binary, building it on first use.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("go tool not found: %w", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out := filepath.Join(binDir, "switchboard")
		cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, "github.com/switchboardhq/switchboard/cmd/switchboard")
		cmd.WaitDelay = 5 * time.Second
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/switchboard: %v\n%s", err, b)
			return
		}
		binPath = out
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// testContext is bounded by d and, when sooner, by the test binary's own
// -timeout (with a margin left for cleanup).
func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	deadline := time.Now().Add(d)
	if td, ok := t.Deadline(); ok && td.Add(-10*time.Second).Before(deadline) {
		deadline = td.Add(-10 * time.Second)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}
