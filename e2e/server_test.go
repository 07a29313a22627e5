package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// server is one running switchboard child process.
type server struct {
	Addr string // host:port it listens on, from its "listening" log line

	cmd    *exec.Cmd
	output *logBuffer
}

// logBuffer keeps everything the server printed and its JSON log entries,
// and wakes waiters whenever a line arrives.
type logBuffer struct {
	mu      sync.Mutex
	text    bytes.Buffer
	lines   []string
	entries []map[string]any
	changed chan struct{} // closed and replaced on every new line
	eof     bool
}

func newLogBuffer() *logBuffer { return &logBuffer{changed: make(chan struct{})} }

func (l *logBuffer) addLine(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.text.WriteString(line)
	l.text.WriteByte('\n')
	l.lines = append(l.lines, line)
	var e map[string]any
	if json.Unmarshal([]byte(line), &e) == nil {
		l.entries = append(l.entries, e)
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *logBuffer) setEOF() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.eof = true
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.text.String()
}

// Write takes the server's stdout (the nbio engine prints plain lines there).
func (l *logBuffer) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		l.addLine(line)
	}
	return len(p), nil
}

// waitEntry waits for a JSON log entry that matches, until ctx ends or the
// output is closed.
func (l *logBuffer) waitEntry(ctx context.Context, match func(map[string]any) bool) (map[string]any, bool) {
	var found map[string]any
	ok := l.wait(ctx, func() bool {
		for _, e := range l.entries {
			if match(e) {
				found = e
				return true
			}
		}
		return false
	})
	return found, ok
}

// waitLine waits for an output line equal to want.
func (l *logBuffer) waitLine(ctx context.Context, want string) bool {
	return l.wait(ctx, func() bool {
		for _, line := range l.lines {
			if line == want {
				return true
			}
		}
		return false
	})
}

// wait re-evaluates cond (under the lock) whenever a line arrives.
func (l *logBuffer) wait(ctx context.Context, cond func() bool) bool {
	for {
		l.mu.Lock()
		ok, changed, eof := cond(), l.changed, l.eof
		l.mu.Unlock()
		if ok {
			return true
		}
		if eof {
			return false
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// captureLines copies r line by line into l until EOF; the returned channel
// is closed when it is done.
func captureLines(r io.Reader, l *logBuffer) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			l.addLine(sc.Text())
		}
		_, _ = io.Copy(io.Discard, r)
		l.setEOF()
	}()
	return done
}

// startServer runs `switchboard serve args...` (args should include --addr
// with port 0), waits for its "listening" line and for /healthz to answer
// 200, and kills it when the test ends.
func startServer(t *testing.T, ctx context.Context, args ...string) *server {
	t.Helper()
	s, _ := launchServer(t, ctx, args...)
	s.waitHealthy(t, ctx)
	return s
}

// launchServer starts the binary with args, waits for its "listening" line
// (returned) and kills it when the test ends.
func launchServer(t *testing.T, ctx context.Context, args ...string) (*server, map[string]any) {
	t.Helper()
	s := &server{output: newLogBuffer()}
	s.cmd = exec.Command(binary(t), append([]string{"serve"}, args...)...)
	s.cmd.Stdout = s.output
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	setProcessGroup(s.cmd)
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start server: %v", err)
	}
	readerDone := captureLines(stderr, s.output)
	t.Cleanup(func() {
		killProcessGroup(s.cmd)
		<-readerDone // the pipe hits EOF once the process is gone
		err := s.cmd.Wait()
		if t.Failed() {
			t.Logf("server exited (%v); its output:\n%s", err, s.output.String())
		}
	})

	listening, ok := s.output.waitEntry(ctx, func(e map[string]any) bool { return e["msg"] == "listening" })
	if !ok {
		t.Fatalf("server did not log \"listening\" (%v); output:\n%s", ctx.Err(), s.output.String())
	}
	s.Addr, _ = listening["addr"].(string)
	if s.Addr == "" {
		t.Fatalf("listening line without addr: %v", listening)
	}
	return s, listening
}

// waitHealthy polls /healthz until it answers 200: the one place where
// polling is the right tool (is the port up?), bounded by ctx.
func (s *server) waitHealthy(t *testing.T, ctx context.Context) {
	t.Helper()
	s.waitHealthyAt(t, ctx, &http.Client{Timeout: time.Second}, "http://"+s.Addr+"/healthz")
}

func (s *server) waitHealthyAt(t *testing.T, ctx context.Context, client *http.Client, url string) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s not healthy before the deadline: %s", url, last)
		case <-tick.C:
		}
	}
}

// token mints a development JWT with the binary's token command.
func token(t *testing.T, ctx context.Context, user, secret string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, binary(t), "token", "--user", user, "--jwt-secret", secret)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("switchboard token: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("switchboard token printed %q, want a JWT", tok)
	}
	return tok
}
