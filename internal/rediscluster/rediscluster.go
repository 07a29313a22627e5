// Package rediscluster runs a throwaway Redis Cluster of local redis-server
// processes (Debian's redis-server and redis-cli), for tests and the bench:
// masters with replicas on free 127.0.0.1 ports, nothing on disk but the
// cluster's node files in a temporary directory, and a short node timeout so
// that a killed master's replica takes over within seconds.
package rediscluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// NodeTimeout is the cluster-node-timeout the nodes run with: a master
// silent this long is failed over to its replica.
const NodeTimeout = time.Second

// Node is one redis-server of the cluster.
type Node struct {
	Port int
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// Addr is the node's host:port.
func (n *Node) Addr() string { return "127.0.0.1:" + strconv.Itoa(n.Port) }

// Cluster is a running Redis Cluster.
type Cluster struct {
	dir   string
	mu    sync.Mutex
	nodes []*Node
}

// Available says why a cluster cannot be started here, or "" if it can.
func Available() string {
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			return bin + " not found (apt-get install redis-server)"
		}
	}
	return ""
}

// Start runs masters x (1 + replicas) nodes, creates the cluster and waits
// until every slot is served and every node agrees that the cluster is up.
func Start(ctx context.Context, masters, replicas int) (*Cluster, error) {
	if why := Available(); why != "" {
		return nil, errors.New(why)
	}
	dir, err := os.MkdirTemp("", "rediscluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	for range masters * (1 + replicas) {
		// A free port may be taken by another process before the node
		// binds it: then the node exits, and a new pair of ports is tried.
		var err error
		for attempt := 0; attempt < 3; attempt++ {
			var n *Node
			if n, err = c.startNode(); err != nil {
				break
			}
			c.nodes = append(c.nodes, n)
			if err = waitPing(ctx, n.Addr()); err == nil {
				break
			}
			_ = n.cmd.Process.Kill()
			<-n.done
			c.nodes = c.nodes[:len(c.nodes)-1]
		}
		if err != nil {
			c.Stop()
			return nil, err
		}
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.nodes {
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) startNode() (*Node, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	bus, err := freePort()
	if err != nil {
		return nil, err
	}
	p := strconv.Itoa(port)
	cmd := exec.Command("redis-server", "--port", p, "--bind", "127.0.0.1",
		"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
		"--cluster-config-file", c.dir+"/nodes-"+p+".conf",
		"--cluster-node-timeout", strconv.Itoa(int(NodeTimeout.Milliseconds())),
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", c.dir, "--loglevel", "warning")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	n := &Node{Port: port, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(n.done) }()
	return n, nil
}

// URL is a redis:// URL of one member: what a broker needs to find the rest.
func (c *Cluster) URL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return "redis://" + c.nodes[0].Addr()
}

// PIDs lists the process ids of the nodes.
func (c *Cluster) PIDs() []int {
	var pids []int
	for _, n := range c.Nodes() {
		pids = append(pids, n.cmd.Process.Pid)
	}
	return pids
}

// Nodes lists the nodes, killed ones included.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Node(nil), c.nodes...)
}

// MasterOf is the node serving slot now, by CLUSTER SHARDS of a live node.
func (c *Cluster) MasterOf(ctx context.Context, slot int) (*Node, error) {
	for _, n := range c.live() {
		cl := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1, DisableIdentity: true})
		ranges, err := slotMasters(ctx, cl)
		_ = cl.Close()
		if err != nil {
			continue
		}
		for _, r := range ranges {
			if slot >= r.start && slot <= r.end && r.master != "" {
				return c.byAddr(r.master), nil
			}
		}
	}
	return nil, fmt.Errorf("no live node knows who serves slot %d", slot)
}

// slotRange is a range of slots and the address of its online master ("" if
// the shard has none).
type slotRange struct {
	start, end int
	master     string
}

// slotMasters reads CLUSTER SHARDS: each shard's slot ranges and the master
// of the shard that the asked node believes online.
func slotMasters(ctx context.Context, cl *redis.Client) ([]slotRange, error) {
	shards, err := cl.ClusterShards(ctx).Result()
	if err != nil {
		return nil, err
	}
	var out []slotRange
	for _, sh := range shards {
		master := ""
		for _, n := range sh.Nodes {
			if n.Role == "master" && n.Health == "online" {
				master = net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
			}
		}
		for _, r := range sh.Slots {
			out = append(out, slotRange{start: int(r.Start), end: int(r.End), master: master})
		}
	}
	return out, nil
}

func (c *Cluster) byAddr(addr string) *Node {
	for _, n := range c.Nodes() {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

func (c *Cluster) live() []*Node {
	var out []*Node
	for _, n := range c.Nodes() {
		select {
		case <-n.done:
		default:
			out = append(out, n)
		}
	}
	return out
}

// MoveSlot migrates slot, with its keys, from the master serving it to
// the master to, the way resharding does: IMPORTING / MIGRATING, MIGRATE
// of each key, then SETSLOT NODE on every master.
func (c *Cluster) MoveSlot(ctx context.Context, slot int, to *Node) error {
	from, err := c.MasterOf(ctx, slot)
	if err != nil {
		return err
	}
	if from == to {
		return nil
	}
	src := redis.NewClient(&redis.Options{Addr: from.Addr(), MaxRetries: -1, DisableIdentity: true})
	defer src.Close()
	dst := redis.NewClient(&redis.Options{Addr: to.Addr(), MaxRetries: -1, DisableIdentity: true})
	defer dst.Close()
	srcID, err := src.ClusterMyID(ctx).Result()
	if err != nil {
		return err
	}
	dstID, err := dst.ClusterMyID(ctx).Result()
	if err != nil {
		return err
	}
	s := strconv.Itoa(slot)
	if err := dst.Do(ctx, "CLUSTER", "SETSLOT", s, "IMPORTING", srcID).Err(); err != nil {
		return fmt.Errorf("importing: %w", err)
	}
	if err := src.Do(ctx, "CLUSTER", "SETSLOT", s, "MIGRATING", dstID).Err(); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, slot, 100).Result()
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			break
		}
		for _, k := range keys {
			if err := src.Migrate(ctx, "127.0.0.1", strconv.Itoa(to.Port), k, 0, 5*time.Second).Err(); err != nil {
				return fmt.Errorf("migrate %s: %w", k, err)
			}
		}
	}
	for _, n := range c.live() {
		cl := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1, DisableIdentity: true})
		role, _ := cl.Do(ctx, "ROLE").Slice()
		if len(role) > 0 && role[0] == "master" {
			if err := cl.Do(ctx, "CLUSTER", "SETSLOT", s, "NODE", dstID).Err(); err != nil {
				_ = cl.Close()
				return fmt.Errorf("setslot node on %s: %w", n.Addr(), err)
			}
		}
		_ = cl.Close()
	}
	return nil
}

// Masters lists the live masters.
func (c *Cluster) Masters(ctx context.Context) []*Node {
	var out []*Node
	for _, n := range c.live() {
		cl := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1, DisableIdentity: true})
		role, _ := cl.Do(ctx, "ROLE").Slice()
		_ = cl.Close()
		if len(role) > 0 && role[0] == "master" {
			out = append(out, n)
		}
	}
	return out
}

// Kill sends SIGKILL to n and waits for it to exit.
func (c *Cluster) Kill(n *Node) error {
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-n.done
	return nil
}

// WaitHealthy waits until every live node reports cluster_state:ok, every
// slot has a master that is alive and every replica is in sync.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		err := c.healthy(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil || last == nil {
			last = err // the reason before the deadline, not the deadline
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the Redis Cluster did not become healthy: %w", last)
		case <-tick.C:
		}
	}
}

func (c *Cluster) healthy(ctx context.Context) error {
	live := c.live()
	alive := make(map[string]bool, len(live))
	for _, n := range live {
		alive[n.Addr()] = true
	}
	for _, n := range live {
		cl := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1, DisableIdentity: true})
		info, err := cl.ClusterInfo(ctx).Result()
		var slots []slotRange
		if err == nil {
			slots, err = slotMasters(ctx, cl)
		}
		var repl string
		if err == nil {
			repl, err = cl.Info(ctx, "replication").Result()
		}
		_ = cl.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", n.Addr(), err)
		}
		// A replica that has not synced yet could not take over its
		// master's slots: wait for every link.
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("%s: replica not in sync with its master", n.Addr())
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state is not ok", n.Addr())
		}
		covered := 0
		for _, s := range slots {
			if !alive[s.master] {
				return fmt.Errorf("%s: slots %d-%d have no live master", n.Addr(), s.start, s.end)
			}
			covered += s.end - s.start + 1
		}
		if covered != 16384 {
			return fmt.Errorf("%s: %d of 16384 slots served", n.Addr(), covered)
		}
	}
	return nil
}

// Stop kills every node and removes the directory.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes() {
		_ = n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.done
	}
	_ = os.RemoveAll(c.dir)
}

func waitPing(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DisableIdentity: true, DialTimeout: 200 * time.Millisecond})
	defer cl.Close()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cl.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis-server %s did not answer: %w", addr, err)
		case <-tick.C:
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
