package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/internal/loadgen"
)

// session owns the server and load-client processes of one bench run.
type session struct {
	opts       benchOpts
	exe        string
	locals     []string
	stderr     io.Writer
	addrs      []string // node k listens on addrs[k]
	srvs       []*child // node k is srvs[k]
	serverCmds []string
	workers    []*worker
	nextConn   int
	// target is what the run measures: targetServer, or targetFloor (the
	// bare broadcast loop of internal/floor, run as "bench floor-serve").
	target string
	// brokerPIDs are the processes of a broker the run started itself.
	brokerPIDs []int
}

func (s *session) logf(format string, args ...any) {
	_, _ = fmt.Fprintf(s.stderr, "bench: "+format+"\n", args...)
}

// startServers runs n nodes, each with the bench's flags, then extra, then
// the user's pass-through flags, and waits until every one answers on
// readyPath: /healthz, or /readyz for nodes on a broker, which are ready
// only once connected to it.
func (s *session) startServers(ctx context.Context, n int, readyPath string, extra ...string) error {
	for k := 0; k < n; k++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		args := []string{"serve", "--addr", addr, "--log-level", "warn"}
		args = append(args, extra...)
		args = append(args, s.opts.serverFlags...)
		if s.target == targetFloor { // the floor has no options
			args = []string{"bench", "floor-serve", "--addr", addr}
		}
		name := "server"
		if n > 1 {
			name = "server" + strconv.Itoa(k)
		}
		srv, err := startChild(name, s.opts.serverCPU, s.exe, args, nil, nil, &prefixWriter{w: s.stderr, prefix: name + ": "})
		if err != nil {
			return err
		}
		s.addrs, s.srvs = append(s.addrs, addr), append(s.srvs, srv)
		s.serverCmds = append(s.serverCmds, shellJoin(srv.cmd.Args))
		s.logf("started %s (pid %d)", s.serverCmds[k], srv.pid())
	}
	hctx, cancel := context.WithTimeout(ctx, s.opts.timeout)
	defer cancel()
	for k, srv := range s.srvs {
		if err := waitHealthy(hctx, srv, s.addrs[k], readyPath); err != nil {
			return err
		}
	}
	return nil
}

// serverFlagsFor returns the flags a run of conns connections needs.
func (s *session) serverFlagsFor(conns int) []string {
	// Load clients connect thousands of times from a handful of addresses:
	// lift the per-IP handshake limit along with the per-connection rate.
	f := []string{"--rate=100000", "--burst=100000", "--handshake-rate=1000000", "--handshake-burst=1000000"}
	if s.opts.users > 0 && s.opts.users < conns {
		f = append(f, "--max-conns-per-user="+strconv.Itoa((conns+s.opts.users-1)/s.opts.users+1))
	}
	return append(f, "--max-conns="+strconv.Itoa(conns+100))
}

// spawn starts load-client processes holding n connections to node 0
// between them.
func (s *session) spawn(n int, extra ...string) ([]*worker, error) {
	return s.spawnOn(0, n, extra...)
}

// spawnOn starts load-client processes holding n connections to node
// between them.
func (s *session) spawnOn(node, n int, extra ...string) ([]*worker, error) {
	var ws []*worker
	per := max(1, s.opts.perProc)
	for off := 0; off < n; off += per {
		k := min(per, n-off)
		args := []string{"bench", "client", "--addr", s.addrs[node], "--conns", strconv.Itoa(k),
			"--first", strconv.Itoa(s.nextConn), "--users", strconv.Itoa(s.opts.users),
			"--room", s.opts.room, "--local-addrs", strings.Join(s.locals, ","),
			"--parallel", strconv.Itoa(s.opts.parallel), "--timeout", s.opts.timeout.String()}
		args = append(args, extra...)
		name := fmt.Sprintf("client%d", len(s.workers))
		w, err := startWorker(name, s.opts.clientCPU, s.exe, args, s.stderr)
		if err != nil {
			return nil, err
		}
		s.nextConn += k
		s.workers = append(s.workers, w)
		ws = append(ws, w)
	}
	return ws, nil
}

// total sums the latest status of ws.
func total(ws []*worker) loadgen.Status {
	var t loadgen.Status
	for _, w := range ws {
		st := w.status()
		t.Dialed += st.Dialed
		t.Welcomed += st.Welcomed
		t.Joined += st.Joined
		t.Failed += st.Failed
		t.Closed += st.Closed
		t.Frames += st.Frames
		t.Msgs += st.Msgs
		t.Pings += st.Pings
		t.Errors += st.Errors
		t.LastRecvNs = max(t.LastRecvNs, st.LastRecvNs)
		if t.FirstErr == "" {
			t.FirstErr = st.FirstErr
		}
		for k, v := range st.CloseCodes {
			if t.CloseCodes == nil {
				t.CloseCodes = map[string]int64{}
			}
			t.CloseCodes[k] += v
		}
	}
	return t
}

// alive returns an error if the server or any load client has exited.
func (s *session) alive() error {
	for _, srv := range s.srvs {
		if err := srv.exitErr(); err != nil {
			return err
		}
	}
	for _, w := range s.workers {
		if err := w.exitErr(); err != nil {
			return err
		}
	}
	return nil
}

// poll calls check every 20ms until it reports done, printing progress
// lines about once a second, within the phase deadline.
func (s *session) poll(ctx context.Context, phase string, check func(t loadgen.Status) (done bool, progress string, err error), ws []*worker) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.timeout)
	defer cancel()
	start := time.Now()
	lastLog := start
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		t := total(ws)
		done, progress, err := check(t)
		if err != nil {
			return fmt.Errorf("%s: %w", phase, err)
		}
		if done {
			s.logf("%s: %s (%.1fs)", phase, progress, time.Since(start).Seconds())
			return nil
		}
		if time.Since(lastLog) >= time.Second {
			lastLog = time.Now()
			s.logf("%s: %s (%.0fs)", phase, progress, time.Since(start).Seconds())
		}
		if err := s.alive(); err != nil {
			return fmt.Errorf("%s: %w", phase, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w after %s; %s", phase, ctx.Err(), time.Since(start).Round(time.Millisecond), progress)
		case <-tick.C:
		}
	}
}

// waitJoined waits until n connections of ws have joined.
func (s *session) waitJoined(ctx context.Context, phase string, ws []*worker, n int) error {
	return s.poll(ctx, phase, func(t loadgen.Status) (bool, string, error) {
		p := fmt.Sprintf("%d/%d connected, %d welcomed, %d joined, %d failed", t.Dialed, n, t.Welcomed, t.Joined, t.Failed)
		if t.Failed > 0 {
			return false, p, fmt.Errorf("%s; first error: %s", p, t.FirstErr)
		}
		return t.Joined >= int64(n), p, nil
	}, ws)
}

// waitQuiet waits until no frame has arrived at any client for quiet (the
// join announcements of a filling room have all been delivered).
func (s *session) waitQuiet(ctx context.Context, quiet time.Duration) error {
	var last int64 = -1
	since := time.Now()
	return s.poll(ctx, "quiesce", func(t loadgen.Status) (bool, string, error) {
		// Heartbeat pings keep arriving; they do not count.
		if n := t.Frames - t.Pings; n != last {
			last, since = n, time.Now()
		}
		return time.Since(since) >= quiet, fmt.Sprintf("%d frames (besides pings) received by clients", last), nil
	}, s.workers)
}

// sleep waits d, printing a line every 5s, unless ctx ends or a process dies.
func (s *session) sleep(ctx context.Context, phase string, d time.Duration) error {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", phase, ctx.Err())
		case <-time.After(min(left, 5*time.Second)):
		}
		if err := s.alive(); err != nil {
			return fmt.Errorf("%s: %w", phase, err)
		}
		if time.Until(end) > 0 {
			s.logf("%s: %.0fs/%.0fs", phase, d.Seconds()-time.Until(end).Seconds(), d.Seconds())
		}
	}
}

// cpu is the CPU time of all nodes together.
func (s *session) cpu() (time.Duration, error) {
	nodes, err := s.nodeCPU()
	var sum time.Duration
	for _, c := range nodes {
		sum += c.user + c.sys
	}
	return sum, err
}

type cpuTime struct{ user, sys time.Duration }

// nodeCPU is the CPU time of each node.
func (s *session) nodeCPU() ([]cpuTime, error) {
	out := make([]cpuTime, len(s.srvs))
	for k, srv := range s.srvs {
		u, st, err := procCPUSplit(srv.pid())
		if err != nil {
			return nil, err
		}
		out[k] = cpuTime{u, st}
	}
	return out, nil
}

// rss is the resident memory of all nodes together, in KB.
func (s *session) rss() (int64, error) {
	var sum int64
	for _, srv := range s.srvs {
		kb, err := procRSS(srv.pid())
		if err != nil {
			return 0, err
		}
		sum += kb
	}
	return sum, nil
}

// close kills every process the session started.
func (s *session) close() {
	for _, w := range s.workers {
		w.kill()
	}
	for _, srv := range s.srvs {
		srv.kill()
	}
}
