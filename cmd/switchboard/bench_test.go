package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBenchSmoke builds the binary and runs both benches at toy sizes: the
// harness starts the server and its clients, the figures come out, and no
// message is lost. It asserts no times: those belong to docs/performance.md.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts processes")
	}
	bin := filepath.Join(t.TempDir(), "switchboard")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	runBench := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, append([]string{"bench"}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Run(); err != nil {
			t.Fatalf("bench %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, &stdout, &stderr)
		}
		return stdout.String()
	}

	t.Run("idle", func(t *testing.T) {
		out := runBench("idle", "--conns", "200", "--settle", "1s", "--window", "2s", "--timeout", "20s")
		for _, want := range []string{
			"bench idle --conns 200", "server RSS per connection", "KB",
			"server CPU, idle", "% of a core", "connections closed by server   0",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("fanout", func(t *testing.T) {
		out := runBench("fanout", "--subs", "50", "--messages", "20", "--rate", "0", "--timeout", "20s", "--json")
		var res map[string]any
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out)
		}
		for _, k := range []string{"command", "deliveries_per_s", "server_cpu_us_per_delivery", "latency_p50_ms", "latency_p99_ms", "latency_max_ms"} {
			if _, ok := res[k]; !ok {
				t.Errorf("result lacks %q:\n%s", k, out)
			}
		}
		if res["expected"] != float64(1000) || res["received"] != float64(1000) || res["lost"] != float64(0) {
			t.Errorf("want 1000 expected, 1000 received, 0 lost:\n%s", out)
		}
		if !strings.Contains(res["command"].(string), "bench fanout --subs 50") {
			t.Errorf("command = %q", res["command"])
		}
	})
}
