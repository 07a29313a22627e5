package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/switchboardhq/switchboard/internal/loadgen"
	"github.com/switchboardhq/switchboard/server/config"
)

const benchUsage = `Usage:
  switchboard bench idle   [flags] [-- server flags]
  switchboard bench fanout [flags] [-- server flags]

The bench starts the server itself (this binary, "serve" on a free loopback
port, pinned to --server-cpu with taskset) and load-client processes of this
binary pinned to --client-cpu, measures, prints a table (or --json) on stdout
and progress on stderr, and kills every process it started when it ends.

idle    server RSS per idle connection and server CPU with heartbeats on
fanout  --subs subscribers in one room and a publisher: delivery latency
        (--rate R publishes/s) or throughput and server CPU per delivery (--rate 0);
        the publisher posts to /api/publish from --publishers keep-alive HTTP
        clients, as a backend does (--publish-via=ws: frames on a WebSocket);
        with --nodes N --broker redis|nats|redis-cluster across N nodes of one fresh cluster:
        subscribers spread evenly, the publisher on node 0, CPU of all nodes;
        --probes Go clients (package client) subscribe besides, on the last node,
        and report the latency an application sees through the client
        --compression --realistic: permessage-deflate on realistic JSON, with the
        server's bytes out per delivery

Server flags are passed with --server-flag=--ping-interval=10s (repeatable) or
after "--". The bench adds --rate=100000 --burst=100000 (and lifts the per-IP
handshake limit) so the load clients are not rate limited; flags given by you come later and win.

Flags:
`

// benchOpts are the flags both benches share.
type benchOpts struct {
	timeout     time.Duration
	jsonOut     bool
	perProc     int
	parallel    int
	localAddrs  string
	users       int
	room        string
	serverCPU   string
	clientCPU   string
	serverFlags listFlag
	target      string
	rounds      int
	scaling     bool
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func (o *benchOpts) register(fs *flag.FlagSet) {
	fs.DurationVar(&o.timeout, "timeout", 120*time.Second, "deadline for each phase")
	fs.BoolVar(&o.jsonOut, "json", false, "print the results as a JSON object instead of a table")
	fs.IntVar(&o.perProc, "per-proc", 2500, "connections per load-client process")
	fs.IntVar(&o.parallel, "parallel", 64, "concurrent dials per load-client process")
	fs.StringVar(&o.localAddrs, "local-addrs", "127.0.0.2-127.0.0.9", "client source addresses: comma-separated, or a range a.b.c.x-a.b.c.y (empty: kernel's choice)")
	fs.IntVar(&o.users, "users", 0, "distinct user ids over the connections (0: one user per connection)")
	fs.StringVar(&o.room, "room", "bench", "room the connections join")
	fs.StringVar(&o.serverCPU, "server-cpu", "0", "taskset CPU list for the server (empty: no pinning)")
	fs.StringVar(&o.clientCPU, "client-cpu", "1", "taskset CPU list for the load clients (empty: no pinning)")
	fs.StringVar(&o.target, "target", targetServer, `what to measure: "switchboard", "floor" (a bare nbio broadcast loop with no registry, rooms, auth or heartbeats: the machine's lower bound) or "both" (floor, then switchboard, in each round, with their ratio)`)
	fs.IntVar(&o.rounds, "rounds", 1, "rounds of the runs; with several runs or rounds the table shows medians")
	fs.BoolVar(&o.scaling, "scaling", false, "run the server on 1 core (--server-cpu=0), then on 2 (--server-cpu=0,1, clients unpinned) and report the ratio")
	fs.Var(&o.serverFlags, "server-flag", "flag passed to the server (repeatable), e.g. --server-flag=--ping-interval=10s")
}

func bench(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		_, _ = io.WriteString(stderr, benchUsage)
		return errors.New("bench: idle or fanout?")
	}
	mode, args := args[0], args[1:]
	switch mode { // hidden: processes started by the bench
	case "client":
		return benchClient(args, stdout, stderr)
	case "floor-serve":
		return floorServe(args, stderr)
	}
	fs := flag.NewFlagSet("bench "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = io.WriteString(stderr, benchUsage)
		fs.PrintDefaults()
	}
	var o benchOpts
	o.register(fs)
	var run func(ctx context.Context, s *session) (*results, error)
	switch mode {
	case "idle":
		conns := fs.Int("conns", 10000, "idle connections")
		settle := fs.Duration("settle", 10*time.Second, "wait after all joined before reading RSS")
		window := fs.Duration("window", 30*time.Second, "CPU measuring window with idle connections")
		compression := fs.Bool("compression", false, "serve with --compression and have the clients negotiate permessage-deflate")
		run = func(ctx context.Context, s *session) (*results, error) {
			return runIdle(ctx, s, *conns, *settle, *window, *compression)
		}
	case "fanout":
		var f fanoutOpts
		fs.IntVar(&f.subs, "subs", 2000, "subscribers in the room")
		fs.IntVar(&f.messages, "messages", 200, "messages to publish")
		fs.IntVar(&f.size, "size", 100, "approximate bytes of data per message")
		fs.Float64Var(&f.rate, "rate", 20, "publishes per second; 0 = as fast as possible (throughput)")
		fs.DurationVar(&f.drain, "drain", 5*time.Second, "after the last publish, give up on missing messages once none arrived for this long")
		fs.IntVar(&f.nodes, "nodes", 1, "server nodes; subscribers are spread evenly, the publisher is on the first")
		fs.StringVar(&f.broker, "broker", config.BrokerMemory, `broker between the nodes: "memory" (one node only), "redis", "nats", or "redis-cluster" (a Redis Cluster of 3 masters and 3 replicas that the bench starts for the run)`)
		fs.StringVar(&f.redisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis address (with --broker=redis)")
		fs.StringVar(&f.natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS address (with --broker=nats)")
		fs.StringVar(&f.via, "publish-via", loadgen.ViaAPI, `publish path: "api" (POST /api/publish, as a backend does) or "ws" (publish frames on the publisher's WebSocket)`)
		fs.IntVar(&f.publishers, "publishers", 4, "concurrent keep-alive HTTP publishers (with --publish-via=api)")
		fs.IntVar(&f.probes, "probes", 2, "subscribers that are Go clients (package client) on the last node besides --subs, in a load-client process of their own: the latency an application using the client sees (not with --target floor)")
		fs.BoolVar(&f.compression, "compression", false, "serve with --compression and have the subscribers offer permessage-deflate, as browsers do")
		fs.BoolVar(&f.realistic, "realistic", false, `fill each message's data with dashboard-like JSON (repeated keys, varying numbers) instead of a run of "x"`)
		run = func(ctx context.Context, s *session) (*results, error) { return runFanout(ctx, s, f) }
	case "-h", "--help", "help":
		fs.Usage()
		return flag.ErrHelp
	default:
		_, _ = io.WriteString(stderr, benchUsage)
		return fmt.Errorf("unknown bench %q", mode)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.serverFlags = append(o.serverFlags, fs.Args()...)
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	locals, err := parseAddrs(o.localAddrs)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	runs, err := o.plan()
	if err != nil {
		return err
	}
	if len(runs) > 1 || o.rounds > 1 {
		c, err := runPlan(ctx, o, runs, func() *session {
			return &session{opts: o, exe: exe, locals: locals, stderr: stderr}
		}, run)
		c.command = shellJoin(os.Args)
		if len(c.rounds[c.labels[0]]) == 0 {
			return err
		}
		if perr := c.print(stdout, o.jsonOut); perr != nil && err == nil {
			err = perr
		}
		return err
	}
	s := &session{opts: o, exe: exe, locals: locals, stderr: stderr, target: runs[0].target}
	defer s.close()
	res, err := run(ctx, s)
	if res != nil {
		res.command = shellJoin(os.Args)
		res.serverCommands = s.serverCmds
		if perr := res.print(stdout, o.jsonOut); perr != nil && err == nil {
			err = perr
		}
	}
	return err
}

// benchClient is the load-client process: flags in, JSON status lines out.
func benchClient(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c loadgen.Config
	var locals string
	fs.StringVar(&c.Addr, "addr", "", "server host:port")
	fs.IntVar(&c.Conns, "conns", 1, "connections")
	fs.IntVar(&c.First, "first", 0, "index of the first connection")
	fs.IntVar(&c.Users, "users", 0, "distinct users (0: one per connection)")
	fs.StringVar(&c.UserPrefix, "user-prefix", "u", "user id prefix")
	fs.StringVar(&c.Room, "room", "bench", "room to join")
	fs.StringVar(&locals, "local-addrs", "", "comma-separated source IPs")
	fs.IntVar(&c.Parallel, "parallel", 64, "concurrent dials")
	fs.DurationVar(&c.Timeout, "timeout", 2*time.Minute, "dial and handshake deadline")
	fs.BoolVar(&c.Publish, "publish", false, "be the publisher")
	fs.IntVar(&c.Messages, "messages", 0, "messages to publish")
	fs.IntVar(&c.Size, "size", 100, "bytes of data per message")
	fs.Float64Var(&c.Rate, "rate", 0, "publishes per second (0: as fast as possible)")
	fs.StringVar(&c.PublishVia, "publish-via", loadgen.ViaAPI, "publish path: api or ws")
	fs.IntVar(&c.Publishers, "publishers", 4, "concurrent HTTP publishers (api)")
	fs.StringVar(&c.APIKey, "api-key", "", "the server's API key (api)")
	fs.BoolVar(&c.Client, "client", false, "subscribers are Go clients (package client), not raw connections")
	fs.BoolVar(&c.Deflate, "deflate", false, "offer permessage-deflate")
	fs.BoolVar(&c.Realistic, "realistic", false, "publish dashboard-like JSON data")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if locals != "" {
		c.LocalAddrs = strings.Split(locals, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return loadgen.RunWorker(ctx, c, os.Stdin, stdout)
}

// parseAddrs accepts "a,b,c" or "127.0.0.2-127.0.0.9" (last octet range).
func parseAddrs(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if from, to, ok := strings.Cut(s, "-"); ok && !strings.Contains(s, ",") {
		a, b := net.ParseIP(from).To4(), net.ParseIP(to).To4()
		if a == nil || b == nil || !a[:3].Equal(b[:3]) || a[3] > b[3] {
			return nil, fmt.Errorf("bad address range %q", s)
		}
		var out []string
		for x := int(a[3]); x <= int(b[3]); x++ {
			out = append(out, net.IPv4(a[0], a[1], a[2], byte(x)).String())
		}
		return out, nil
	}
	out := strings.Split(s, ",")
	for _, a := range out {
		if net.ParseIP(a) == nil {
			return nil, fmt.Errorf("bad address %q", a)
		}
	}
	return out, nil
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
