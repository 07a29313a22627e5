package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/rediscluster"
)

// TestBenchSmoke builds the binary and runs both benches at toy sizes: the
// harness starts the server and its clients, the figures come out, and no
// message is lost. It asserts no times: those belong to docs/performance.md.
// The cross-node fan-out runs on the local Redis and NATS servers, and is
// skipped where they do not answer.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts processes")
	}
	bin := filepath.Join(t.TempDir(), "switchboard")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
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
		// Two Go clients (package client) subscribe besides, by default.
		if res["probes"] != float64(2) || res["probe_received"] != float64(40) || res["probe_lost"] != float64(0) {
			t.Errorf("want 2 Go client probes with 40 deliveries, 0 lost:\n%s", out)
		}
		for _, k := range []string{"probe_latency_p50_ms", "probe_latency_p99_ms"} {
			if v, ok := res[k].(float64); !ok || v <= 0 {
				t.Errorf("%s = %v, want a latency:\n%s", k, res[k], out)
			}
		}
		if !strings.Contains(res["command"].(string), "bench fanout --subs 50") {
			t.Errorf("command = %q", res["command"])
		}
	})

	t.Run("fanout compression", func(t *testing.T) {
		// Subscribers that offer permessage-deflate get realistic JSON
		// compressed: fewer bytes leave the server for each delivery.
		perDelivery := map[bool]float64{}
		for _, on := range []bool{false, true} {
			args := []string{"fanout", "--subs", "30", "--messages", "20", "--rate", "0", "--size", "1024", "--realistic", "--timeout", "20s", "--json"}
			if on {
				args = append(args, "--compression")
			}
			var res map[string]any
			out := runBench(args...)
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			if res["received"] != float64(600) || res["compression"] != on {
				t.Fatalf("compression %v: want 600 received:\n%s", on, out)
			}
			b, ok := res["bytes_out_per_delivery"].(float64)
			if !ok || b < 100 {
				t.Fatalf("compression %v: bytes_out_per_delivery %v:\n%s", on, res["bytes_out_per_delivery"], out)
			}
			perDelivery[on] = b
		}
		if perDelivery[true] > perDelivery[false]/2 {
			t.Errorf("bytes out per delivery %v with compression, %v without; want less than half", perDelivery[true], perDelivery[false])
		}
	})

	t.Run("fanout path", func(t *testing.T) {
		// The default path is the backend API; ws is the other one.
		for _, c := range []struct {
			args []string
			path string
		}{
			{nil, "POST /api/publish from 4 keep-alive HTTP clients"},
			{[]string{"--publish-via", "ws"}, "publish frames on one WebSocket"},
		} {
			out := runBench(append([]string{"fanout", "--subs", "30", "--messages", "10", "--rate", "0", "--timeout", "20s", "--json"}, c.args...)...)
			var res map[string]any
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			if res["publish_via"] != c.path || res["received"] != float64(300) || res["lost"] != float64(0) {
				t.Errorf("%v: want path %q, 300 received, 0 lost:\n%s", c.args, c.path, out)
			}
		}
	})

	t.Run("fanout against the floor", func(t *testing.T) {
		out := runBench("fanout", "--target", "both", "--subs", "30", "--messages", "10", "--rate", "0", "--timeout", "20s", "--json")
		var res struct {
			Order   []string                  `json:"order"`
			Runs    map[string]map[string]any `json:"runs"`
			Ratio   map[string]float64        `json:"ratio"`
			RatioOf string                    `json:"ratio_of"`
			Cmds    []string                  `json:"server_commands"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out)
		}
		if strings.Join(res.Order, ",") != "floor,switchboard" || res.RatioOf != "switchboard / floor" {
			t.Errorf("order %v, ratio of %q:\n%s", res.Order, res.RatioOf, out)
		}
		for _, l := range []string{"floor", "switchboard"} {
			if res.Runs[l]["received"] != float64(300) || res.Runs[l]["lost"] != float64(0) {
				t.Errorf("%s: want 300 received, 0 lost:\n%s", l, out)
			}
		}
		if res.Ratio["received"] != 1 {
			t.Errorf("ratio of received = %v, want 1:\n%s", res.Ratio["received"], out)
		}
		// CPU is read in clock ticks, too coarse for a ratio at this size.
		if _, ok := res.Ratio["deliveries_per_s"]; !ok {
			t.Errorf("no throughput ratio:\n%s", out)
		}
		for _, l := range []string{"floor", "switchboard"} {
			if _, ok := res.Runs[l]["server_cpu_us_per_delivery"]; !ok {
				t.Errorf("%s: no CPU per delivery:\n%s", l, out)
			}
		}
		if len(res.Cmds) != 2 || !strings.Contains(res.Cmds[0], "bench floor-serve") || !strings.Contains(res.Cmds[1], " serve ") {
			t.Errorf("server commands %q: want the floor, then the server", res.Cmds)
		}
	})

	for _, b := range []struct{ broker, addr string }{{"redis", "127.0.0.1:6379"}, {"nats", "127.0.0.1:4222"}, {"redis-cluster", ""}} {
		t.Run("fanout on "+b.broker, func(t *testing.T) {
			if b.addr == "" {
				if why := rediscluster.Available(); why != "" {
					t.Skip("skipping: " + why)
				}
			} else if c, err := net.DialTimeout("tcp", b.addr, time.Second); err != nil {
				t.Skipf("no %s at %s: %v", b.broker, b.addr, err)
			} else {
				_ = c.Close()
			}
			out := runBench("fanout", "--nodes", "2", "--broker", b.broker, "--subs", "21", "--messages", "10", "--rate", "0", "--timeout", "20s", "--json")
			var res struct {
				Nodes          int      `json:"nodes"`
				Broker         string   `json:"broker"`
				ServerCommands []string `json:"server_commands"`
				Expected       int      `json:"expected"`
				Received       int      `json:"received"`
				Lost           *int     `json:"lost"`
				PerNodeCPU     string   `json:"server_cpu_per_node_ms"`
				BrokerCPU      *float64 `json:"broker_cpu_ms"`
				ProbeReceived  int      `json:"probe_received"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			if res.Nodes != 2 || res.Broker != b.broker || len(res.ServerCommands) != 2 || strings.Count(res.PerNodeCPU, "/") != 1 {
				t.Errorf("want 2 nodes on %s, 2 server commands and 2 CPU figures:\n%s", b.broker, out)
			}
			if res.Expected != 210 || res.Received != 210 || res.Lost == nil || *res.Lost != 0 {
				t.Errorf("want 210 expected, 210 received, 0 lost:\n%s", out)
			}
			// The Go client probes sit on the last node, across the broker.
			if res.ProbeReceived != 20 {
				t.Errorf("want 20 deliveries to the Go client probes:\n%s", out)
			}
			if res.BrokerCPU == nil {
				t.Errorf("no broker CPU figure:\n%s", out)
			}
			// Both nodes are in one cluster, and it is this run's own.
			serverBroker := strings.TrimSuffix(b.broker, "-cluster")
			for _, c := range res.ServerCommands {
				if !strings.Contains(c, "--broker="+serverBroker) || !strings.Contains(c, "--cluster-name=bench") {
					t.Errorf("server command lacks --broker=%s or --cluster-name=bench...: %s", serverBroker, c)
				}
			}
			if len(res.ServerCommands) == 2 && clusterName(res.ServerCommands[0]) != clusterName(res.ServerCommands[1]) {
				t.Errorf("nodes in different clusters:\n%s\n%s", res.ServerCommands[0], res.ServerCommands[1])
			}
		})
	}
}

func clusterName(cmd string) string {
	for _, f := range strings.Fields(cmd) {
		if v, ok := strings.CutPrefix(f, "--cluster-name="); ok {
			return v
		}
	}
	return ""
}

// TestBenchFanoutClusterFlags checks the --nodes and --broker combinations
// refused before any process starts.
func TestBenchFanoutClusterFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--nodes", "2"},
		{"--nodes", "3", "--broker", "memory"},
		{"--nodes", "0", "--broker", "redis"},
		{"--broker", "kafka"},
		{"--publish-via", "carrier-pigeon"},
		{"--publishers", "0"},
		{"--probes", "-1"},
		{"--target", "elsewhere"},
		{"--scaling", "--target", "floor"},
	} {
		err := bench(append([]string{"fanout"}, args...), io.Discard, io.Discard)
		if err == nil {
			t.Errorf("bench fanout %s: no error", strings.Join(args, " "))
		}
	}
}

func TestNodeShare(t *testing.T) {
	for _, c := range []struct{ subs, nodes int }{{600, 3}, {601, 3}, {602, 3}, {2, 3}, {21, 2}, {5, 1}} {
		sum := 0
		for k := 0; k < c.nodes; k++ {
			n := nodeShare(c.subs, c.nodes, k)
			want := 0
			for i := 0; i < c.subs; i++ {
				if i%c.nodes == k {
					want++
				}
			}
			if n != want {
				t.Errorf("nodeShare(%d, %d, %d) = %d, want %d (subscribers i with i %% nodes == k)", c.subs, c.nodes, k, n, want)
			}
			sum += n
		}
		if sum != c.subs {
			t.Errorf("%d subscribers on %d nodes: shares add up to %d", c.subs, c.nodes, sum)
		}
	}
}
