package e2e

import (
	"errors"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboardhq/switchboard/server/config"
)

// The development identity (?user=) must never be reachable from beyond
// the machine: the binary refuses to start that way, and says what to do.
func TestServeRefusesDevAuthOffLoopback(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	for _, args := range [][]string{
		{"serve", "--addr", "0.0.0.0:0", "--auth", "none"},
		{"serve", "--addr", "0.0.0.0:0"}, // jwt by default there, without a key
	} {
		out, err := exec.CommandContext(ctx, binary(t), args...).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("%v: started (err %v), want a refusal; output:\n%s", args, err, out)
		}
		if !strings.Contains(string(out), "--jwt-secret") {
			t.Errorf("%v: the refusal does not say what to do:\n%s", args, out)
		}
	}
}

func TestServeHelpListsEveryFlag(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	out, err := exec.CommandContext(ctx, binary(t), "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("serve --help: %v\n%s", err, out)
	}
	for _, f := range config.Flags() {
		if !strings.Contains(string(out), "--"+f.Name) || !strings.Contains(string(out), f.Env) {
			t.Errorf("--help lacks --%s or %s", f.Name, f.Env)
		}
		if f.Default != "" && !strings.Contains(string(out), f.Default) {
			t.Errorf("--help lacks the default of --%s (%s)", f.Name, f.Default)
		}
	}
}

func TestHealthReadyAndDemoPage(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	s := startServer(t, ctx, "--addr", "127.0.0.1:0")
	for path, want := range map[string]string{
		"/healthz": `"ok"`, "/readyz": `"ready"`, "/": "<title>Switchboard", "/switchboard.js": "export class Switchboard",
	} {
		resp, err := http.Get("http://" + s.Addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
}

// SIGTERM drains: connections are closed 1001 shutting_down and the
// process exits 0. The whole run's output is then searched for the token,
// the secret and a payload marker: none may appear.
func TestSIGTERMDrainsAndLogsHoldNoSecrets(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	const secret, marker = "jwt-secret-8d1f", "PAYLOAD-MARKER-5b2e"
	s := startServer(t, ctx, "--addr", "127.0.0.1:0", "--auth", "jwt", "--jwt-secret", secret, "--log-level", "debug")
	tok := token(t, ctx, "alice", secret)

	// A refused token first: logged as a refusal, never as the token.
	if _, resp, err := websocket.Dial(ctx, "ws://"+s.Addr+"/ws?token="+tok+"x", nil); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("bad token: %v (%v)", err, resp)
	}
	c, err := dialClient(ctx, "ws://"+s.Addr+"/ws?token="+tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.expect(ctx, "welcome", func(f frame) bool { return f.typ() == "welcome" }); err != nil {
		t.Fatal(err)
	}
	for _, req := range []map[string]any{
		{"type": "join", "room": "r", "id": "1"},
		{"type": "publish", "room": "r", "data": marker, "id": "2"},
		{"type": "send", "to": "bob", "data": marker, "id": "3"},
		{"type": "nonsense", "data": marker, "id": "4"},
	} {
		if _, err := c.request(ctx, req); err != nil && req["type"] != "nonsense" {
			t.Fatal(err)
		}
	}

	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		t.Fatal("connection not closed after SIGTERM")
	}
	var ce websocket.CloseError
	if !errors.As(c.err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "shutting_down" {
		t.Fatalf("connection ended with %v, want 1001 shutting_down", c.err)
	}
	if _, ok := s.output.waitEntry(ctx, func(e map[string]any) bool { return e["msg"] == "stopped" }); !ok {
		t.Fatalf("no stopped line after SIGTERM")
	}
	// Reading the output is over (stopped is the last line), so Wait may run.
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("server exit: %v, want 0", err)
		}
	case <-ctx.Done():
		t.Fatal("server did not exit after SIGTERM")
	}
	logs := s.output.String()
	for _, leak := range []string{tok, secret, marker, "token="} {
		if strings.Contains(logs, leak) {
			t.Errorf("server output contains %q", leak)
		}
	}
	if !strings.Contains(logs, `"user_id":"alice"`) || !strings.Contains(logs, `"online_count"`) {
		t.Errorf("server output lacks the connection events:\n%s", logs)
	}
}
