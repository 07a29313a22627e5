package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchboardhq/switchboard/internal/loadgen"
)

// child is a process the bench started; it is killed when the bench ends,
// and (through Pdeathsig) when the bench itself dies.
type child struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	err    error         // Wait's result, valid after exited
}

// startChild runs exe args, pinned to cpu with taskset when cpu != "" and
// taskset exists. taskset execs the command, so the pid is the command's.
func startChild(name, cpu, exe string, args []string, stdin io.Reader, stdout, stderr io.Writer) (*child, error) {
	if cpu != "" {
		if ts, err := exec.LookPath("taskset"); err == nil {
			args = append([]string{"-c", cpu, exe}, args...)
			exe = ts
		}
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (w *worker) kill() {
	_ = w.stdin.Close()
	w.child.kill()
}

func (c *child) kill() {
	select {
	case <-c.exited:
	default:
		_ = c.cmd.Process.Kill()
		select {
		case <-c.exited:
		case <-time.After(5 * time.Second):
		}
	}
}

// exitErr reports whether the process has exited, and how.
func (c *child) exitErr() error {
	select {
	case <-c.exited:
		return fmt.Errorf("%s (pid %d) exited unexpectedly: %v", c.name, c.pid(), c.err)
	default:
		return nil
	}
}

// prefixWriter copies whole lines to w, each prefixed.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		_, _ = fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitHealthy polls GET path (/healthz or /readyz) until it answers 200.
func waitHealthy(ctx context.Context, srv *child, addr, path string) error {
	cl := &http.Client{Timeout: time.Second}
	for {
		resp, err := cl.Get("http://" + addr + path)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", path, resp.Status) // /readyz: 503 until the broker is up
		}
		if err := srv.exitErr(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not answering 200 on %s%s: %w (last: %v)", srv.name, addr, path, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// procRSS returns VmRSS of pid in KB.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

var clkTck = sync.OnceValue(func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
})

// procCPUSplit returns utime and stime of pid.
func procCPUSplit(pid int) (user, sys time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("bad cpu fields in /proc/%d/stat", pid)
	}
	tick := float64(time.Second) / clkTck()
	return time.Duration(float64(ut) * tick), time.Duration(float64(st) * tick), nil
}

// worker is a load-client child process and the latest status it reported.
type worker struct {
	*child
	stdin   io.WriteCloser
	mu      sync.Mutex
	last    loadgen.Status
	reports chan loadgen.Status // "report" and "published" lines
}

func startWorker(name, cpu, exe string, args []string, stderr io.Writer) (*worker, error) {
	// Real pipes (not io.Pipe), so that exec starts no copying goroutines
	// and Wait returns as soon as the process has exited.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		_ = inR.Close()
		_ = inW.Close()
		return nil, err
	}
	w := &worker{stdin: inW, reports: make(chan loadgen.Status, 4)}
	ch, err := startChild(name, cpu, exe, args, inR, outW, &prefixWriter{w: stderr, prefix: name + ": "})
	_ = inR.Close()
	_ = outW.Close()
	if err != nil {
		_ = inW.Close()
		_ = outR.Close()
		return nil, err
	}
	w.child = ch
	go func() {
		defer outR.Close()
		sc := bufio.NewScanner(outR)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		for sc.Scan() {
			var s loadgen.Status
			if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
				_, _ = fmt.Fprintf(stderr, "%s: bad status line: %.200s\n", name, sc.Bytes())
				continue
			}
			w.mu.Lock()
			w.last = s
			w.mu.Unlock()
			if s.Kind != "status" {
				select {
				case w.reports <- s:
				default: // nobody asked; drop rather than block
				}
			}
		}
	}()
	return w, nil
}

func (w *worker) status() loadgen.Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

func (w *worker) send(cmd string) error {
	_, err := io.WriteString(w.stdin, cmd+"\n")
	return err
}

// await waits for the next report-like line of the given kind.
func (w *worker) await(ctx context.Context, kind string) (loadgen.Status, error) {
	for {
		select {
		case s := <-w.reports:
			if s.Kind == kind {
				return s, nil
			}
		case <-w.exited:
			return loadgen.Status{}, w.exitErr()
		case <-ctx.Done():
			return loadgen.Status{}, fmt.Errorf("%s: waiting for %s: %w", w.name, kind, ctx.Err())
		}
	}
}
