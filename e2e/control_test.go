package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// restartableServer runs the switchboard binary and lets a Node script stop,
// start, restart, freeze (SIGSTOP) and thaw (SIGCONT) it through a small
// HTTP control endpoint on loopback. A new process always listens on the
// address the first one got, so clients reconnect to the same URL.
type restartableServer struct {
	t    *testing.T
	ctx  context.Context
	args []string // without --addr

	mu      sync.Mutex
	addr    string
	procs   []*exec.Cmd // every process started, killed at cleanup
	readers []<-chan struct{}
	cur     *server
}

func newRestartableServer(t *testing.T, ctx context.Context, args ...string) *restartableServer {
	t.Helper()
	rs := &restartableServer{t: t, ctx: ctx, args: args}
	t.Cleanup(func() {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		for i, cmd := range rs.procs {
			killProcessGroup(cmd)
			<-rs.readers[i]
			_ = cmd.Wait()
		}
		if t.Failed() && rs.cur != nil {
			t.Logf("last server's output:\n%s", rs.cur.output.String())
		}
	})
	if err := rs.start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return rs
}

func (rs *restartableServer) URL() string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return "ws://" + rs.addr
}

// start runs a new process on addr; callers hold no lock. It may run on any
// goroutine, so it reports errors instead of failing the test.
func (rs *restartableServer) start(addr string) error {
	bin := binary(rs.t)
	s := &server{output: newLogBuffer()}
	s.cmd = exec.Command(bin, append([]string{"serve", "--addr", addr}, rs.args...)...)
	s.cmd.Stdout = s.output
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return err
	}
	setProcessGroup(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	done := captureLines(stderr, s.output)
	rs.mu.Lock()
	rs.procs = append(rs.procs, s.cmd)
	rs.readers = append(rs.readers, done)
	rs.mu.Unlock()

	ctx, cancel := context.WithTimeout(rs.ctx, 20*time.Second)
	defer cancel()
	listening, ok := s.output.waitEntry(ctx, func(e map[string]any) bool { return e["msg"] == "listening" })
	if !ok {
		return fmt.Errorf("server on %s did not log \"listening\"; output:\n%s", addr, s.output.String())
	}
	s.Addr, _ = listening["addr"].(string)
	if err := waitHealthy(ctx, s.Addr); err != nil {
		return err
	}
	rs.mu.Lock()
	rs.addr, rs.cur = s.Addr, s
	rs.mu.Unlock()
	return nil
}

// stop kills the running process and waits until it is gone.
func (rs *restartableServer) stop() error {
	rs.mu.Lock()
	s := rs.cur
	rs.cur = nil
	rs.mu.Unlock()
	if s == nil {
		return fmt.Errorf("no server running")
	}
	killProcessGroup(s.cmd)
	ctx, cancel := context.WithTimeout(rs.ctx, 10*time.Second)
	defer cancel()
	s.output.wait(ctx, func() bool { return false }) // returns at EOF: the process is gone
	if ctx.Err() != nil {
		return fmt.Errorf("server did not exit")
	}
	return nil
}

func (rs *restartableServer) signal(sig syscall.Signal) error {
	rs.mu.Lock()
	s := rs.cur
	rs.mu.Unlock()
	if s == nil {
		return fmt.Errorf("no server running")
	}
	return syscall.Kill(-s.cmd.Process.Pid, sig)
}

func waitHealthy(ctx context.Context, addr string) error {
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("http://%s/healthz not healthy: %v", addr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// controlHandler: POST /stop, /start, /restart, /sigstop, /sigcont; each
// answers {"url": "ws://host:port"} or 500 with the error.
func (rs *restartableServer) controlHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var err error
		switch r.URL.Path {
		case "/stop":
			err = rs.stop()
		case "/start":
			err = rs.start(strings.TrimPrefix(rs.URL(), "ws://"))
		case "/restart":
			if err = rs.stop(); err == nil {
				err = rs.start(strings.TrimPrefix(rs.URL(), "ws://"))
			}
		case "/sigstop":
			err = rs.signal(syscall.SIGSTOP)
		case "/sigcont":
			err = rs.signal(syscall.SIGCONT)
		default:
			http.NotFound(w, r)
			return
		}
		if err != nil {
			rs.t.Logf("control %s: %v", r.URL.Path, err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"url": rs.URL()})
	})
}

// serveControl starts the control endpoint on loopback and returns its URL.
func (rs *restartableServer) serveControl(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rs.controlHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// nodeTools finds node and npm and makes sure e2e/node/node_modules holds
// the pinned packages; required says whether their absence fails the test.
func nodeTools(t *testing.T, ctx context.Context, deps ...string) (nodeBin, dir string) {
	t.Helper()
	nodeBin, errNode := exec.LookPath("node")
	npmBin, errNpm := exec.LookPath("npm")
	if errNode != nil || errNpm != nil {
		t.Fatalf("node and npm are needed on PATH (node: %v, npm: %v); run scripts/browser-setup.sh", errNode, errNpm)
	}
	dir, err := filepath.Abs("node")
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range deps {
		want := pinnedVersion(t, filepath.Join(dir, "package.json"), dep)
		if installedVersion(filepath.Join(dir, "node_modules", dep, "package.json")) != want {
			npmCI(t, ctx, npmBin, dir)
			break
		}
	}
	for _, dep := range deps {
		want := pinnedVersion(t, filepath.Join(dir, "package.json"), dep)
		if got := installedVersion(filepath.Join(dir, "node_modules", dep, "package.json")); got != want {
			t.Fatalf("e2e/node/node_modules has %s %q, package.json pins %q", dep, got, want)
		}
	}
	return nodeBin, dir
}

func npmCI(t *testing.T, ctx context.Context, npmBin, dir string) {
	t.Helper()
	ciCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ciCtx, npmBin, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	setProcessGroup(cmd)
	out, err := cmd.CombinedOutput()
	killProcessGroup(cmd)
	if err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
}

// runNodeTests runs a node:test file and fails the test when it fails; its
// output (one line per test, spec reporter) goes to the test log.
func runNodeTests(t *testing.T, ctx context.Context, nodeBin, dir, file string, timeout time.Duration, env ...string) {
	t.Helper()
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(runCtx, nodeBin, "--test", "--test-reporter=spec", "--test-concurrency=1", file)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "NO_COLOR=1", "FORCE_COLOR=0"), env...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 5 * time.Second
	setProcessGroup(cmd)
	err := cmd.Run()
	killProcessGroup(cmd)
	t.Logf("node --test %s:\n%s", file, out.String())
	if runCtx.Err() != nil {
		t.Fatalf("node --test %s did not finish within %v", file, timeout)
	}
	if err != nil {
		t.Fatalf("node --test %s failed (%v); see the output above", file, err)
	}
	if !regexp.MustCompile(`(?m)^ℹ pass [1-9][0-9]*$`).MatchString(out.String()) ||
		!regexp.MustCompile(`(?m)^ℹ fail 0$`).MatchString(out.String()) {
		t.Fatalf("node --test %s: no \"pass N\"/\"fail 0\" summary in its output", file)
	}
}
