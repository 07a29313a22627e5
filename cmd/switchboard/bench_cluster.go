package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/internal/loadgen"
	"github.com/switchboardhq/switchboard/internal/rediscluster"
	"github.com/switchboardhq/switchboard/server/config"
)

// checkCluster validates --nodes and --broker.
func (f fanoutOpts) checkCluster() error {
	if f.nodes <= 0 {
		return fmt.Errorf("--nodes must be positive")
	}
	switch f.broker {
	case config.BrokerMemory:
		if f.nodes > 1 {
			return fmt.Errorf("--nodes=%d needs --broker=%s or --broker=%s: the memory broker does not leave its node", f.nodes, config.BrokerRedis, config.BrokerNATS)
		}
	case config.BrokerRedis, config.BrokerNATS:
	case brokerRedisCluster:
		if why := rediscluster.Available(); why != "" {
			return fmt.Errorf("--broker=%s starts a Redis Cluster of its own: %s", brokerRedisCluster, why)
		}
	default:
		return fmt.Errorf("--broker must be %q, %q, %q or %q, got %q", config.BrokerMemory, config.BrokerRedis, brokerRedisCluster, config.BrokerNATS, f.broker)
	}
	return nil
}

// brokerRedisCluster is the bench's own broker choice: a throwaway Redis
// Cluster of 3 masters and 3 replicas on free loopback ports, started for
// the run and stopped after it; the nodes get --broker=redis and one
// member's address.
const brokerRedisCluster = "redis-cluster"

// startRedisCluster starts the run's Redis Cluster and points the nodes at
// it (f.redisURL).
func (s *session) startRedisCluster(ctx context.Context, f *fanoutOpts) (stop func(), err error) {
	s.logf("starting a Redis Cluster of 3 masters and 3 replicas")
	c, err := rediscluster.Start(ctx, 3, 1)
	if err != nil {
		return nil, fmt.Errorf("start a Redis Cluster: %w", err)
	}
	f.redisURL = c.URL()
	s.brokerPIDs = c.PIDs()
	return c.Stop, nil
}

// brokerCPU is the CPU time of the broker's processes: the run's own Redis
// Cluster, or the redis-server or nats-server processes of this host.
func (s *session) brokerCPU(f fanoutOpts) (time.Duration, bool) {
	pids := s.brokerPIDs
	if len(pids) == 0 {
		name := "redis-server"
		if f.broker == config.BrokerNATS {
			name = "nats-server"
		}
		pids = processesNamed(name)
	}
	if len(pids) == 0 {
		return 0, false
	}
	var sum time.Duration
	for _, pid := range pids {
		u, st, err := procCPUSplit(pid)
		if err != nil {
			continue // gone
		}
		sum += u + st
	}
	return sum, true
}

// processesNamed lists the processes whose command name is name.
func processesNamed(name string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err == nil && strings.TrimSpace(string(comm)) == name {
			pids = append(pids, pid)
		}
	}
	return pids
}

// onBroker reports whether the nodes talk through Redis or NATS.
func (f fanoutOpts) onBroker() bool { return f.broker != config.BrokerMemory }

// brokerFlags are the server flags that put every node of this run on the
// broker, in a cluster of its own: a fresh --cluster-name keeps the run
// apart from other runs and anything else sharing the broker server.
func (f fanoutOpts) brokerFlags() ([]string, error) {
	if !f.onBroker() {
		return nil, nil
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	broker := f.broker
	if broker == brokerRedisCluster {
		broker = config.BrokerRedis
	}
	flags := []string{"--broker=" + broker, "--cluster-name=bench" + hex.EncodeToString(b[:])}
	if broker == config.BrokerRedis {
		return append(flags, "--redis-url="+f.redisURL), nil
	}
	return append(flags, "--nats-url="+f.natsURL), nil
}

// readyPath is what a node answers 200 on once it can take the bench's
// connections: on a broker, /readyz, which waits for the broker
// connection; otherwise /healthz, as the bench always did.
func (f fanoutOpts) readyPath() string {
	if f.onBroker() {
		return "/readyz"
	}
	return "/healthz"
}

// nodeShare is how many of subs subscribers node k of nodes holds when
// subscriber i is on node i % nodes.
func nodeShare(subs, nodes, k int) int {
	n := subs / nodes
	if k < subs%nodes {
		n++
	}
	return n
}

// spawnSubscribers starts the subscribers, spread evenly over the nodes.
// Each node gets load-client processes of its own, since a load client
// dials one address.
func (s *session) spawnSubscribers(subs int, extra ...string) ([]*worker, error) {
	var all []*worker
	for k := range s.srvs {
		n := nodeShare(subs, len(s.srvs), k)
		if n == 0 {
			continue
		}
		ws, err := s.spawnOn(k, n, extra...)
		if err != nil {
			return nil, err
		}
		all = append(all, ws...)
	}
	return all, nil
}

// waitNodeConns waits until GET /stats of node k reports want[k]
// connections. A joined client proves its own node took the join; that
// every node counts all of its clients shows that no join is still on its
// way to a node's broker subscription when the publisher starts.
func (s *session) waitNodeConns(ctx context.Context, want []int) error {
	cl := &http.Client{Timeout: time.Second}
	got := make([]int, len(want))
	return s.poll(ctx, "node connections", func(loadgen.Status) (bool, string, error) {
		done := true
		var p []string
		for k, addr := range s.addrs {
			n, err := nodeConns(cl, addr)
			if err != nil {
				p = append(p, fmt.Sprintf("node %d: %v", k, err))
				done = false
				continue
			}
			got[k] = n
			done = done && n == want[k]
			p = append(p, fmt.Sprintf("node %d: %d/%d", k, n, want[k]))
		}
		return done, strings.Join(p, ", "), nil
	}, nil)
}

// nodeConns reads "connections" from the node's public /stats.
func nodeConns(cl *http.Client, addr string) (int, error) {
	resp, err := cl.Get("http://" + addr + "/stats")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /stats: %s", resp.Status)
	}
	var st struct {
		Connections *int `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, fmt.Errorf("GET /stats: %w", err)
	}
	if st.Connections == nil {
		return 0, fmt.Errorf("GET /stats: no connections field")
	}
	return *st.Connections, nil
}

// cpuSpent is the user and system CPU time all nodes spent between two
// readings, and each node's total in ms, "a/b/c".
func cpuSpent(before, after []cpuTime) (user, sys time.Duration, perNode string) {
	parts := make([]string, len(after))
	for k := range after {
		u, st := after[k].user-before[k].user, after[k].sys-before[k].sys
		user, sys = user+u, sys+st
		parts[k] = fmt.Sprintf("%.0f", float64(u+st)/float64(time.Millisecond))
	}
	return user, sys, strings.Join(parts, "/")
}
