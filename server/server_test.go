package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/lesismal/nbio/logging"
	"go.uber.org/goleak"

	"github.com/switchboardhq/switchboard/server/config"
)

func TestMain(m *testing.M) {
	logging.SetLevel(logging.LevelNone)
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/lesismal/nbio/timer.(*Timer).loop"),
		goleak.IgnoreTopFunction("github.com/lesismal/nbio/taskpool.(*TaskPool).run"),
	)
}

// The server runs in-process on nbio's engine, serves a WebSocket client,
// and on cancellation drains and returns, leaving no goroutine behind.
func TestRunServesAndDrains(t *testing.T) {
	skipUnderRace(t)
	_, addr, cancel, done := runInProcess(t, "--addr", "127.0.0.1:0")
	defer cancel()

	resp, err := http.Get("http://" + addr.String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz %d", resp.StatusCode)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	c, _, err := websocket.Dial(dctx, "ws://"+addr.String()+"/ws?user=alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if _, data, err := c.Read(dctx); err != nil || len(data) == 0 {
		t.Fatalf("welcome: %v", err)
	}

	cancel()
	_, _, err = c.Read(dctx)
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("after cancel: %v, want 1001", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// skipUnderRace skips a test that serves through nbio (see race_on_test.go).
func skipUnderRace(t *testing.T) {
	t.Helper()
	if raceEnabled {
		t.Skip("serves through nbio: runs without -race (see race_on_test.go)")
	}
}

// runInProcess starts a server configured by args (flags) in this process,
// on nbio's engine, and returns it, its address, the function that stops
// it, and where Run's result arrives.
func runInProcess(t *testing.T, args ...string) (*Server, net.Addr, context.CancelFunc, <-chan error) {
	t.Helper()
	cfg, err := config.Load(args, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, func(a net.Addr) { started <- a }) }()
	select {
	case addr := <-started:
		return srv, addr, cancel, done
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("not started")
	}
	return nil, nil, cancel, done
}

// The event-stream fallback is on by default; --sse=false takes /sse away
// (404 from the demo page's handler, not a stream).
func TestSSEFlag(t *testing.T) {
	on, _ := testServer(t)
	if rec := call(t, on.Handler(), "POST", "/sse", "", `{"type":"ping"}`); rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "unknown_session") {
		t.Fatalf("POST /sse without a session, --sse on: %d %s, want 404 unknown_session", rec.Code, rec.Body)
	}
	off, _ := testServer(t, "--sse=false")
	if rec := call(t, off.Handler(), "POST", "/sse", "", `{"type":"ping"}`); rec.Code == http.StatusNotFound && strings.Contains(rec.Body.String(), "unknown_session") || rec.Code < 400 {
		t.Fatalf("POST /sse with --sse=false: %d %s, want no event-stream endpoint", rec.Code, rec.Body)
	}
	if rec := call(t, off.Handler(), "GET", "/sse?user=a", "", ""); rec.Header().Get("Content-Type") == "text/event-stream; charset=utf-8" {
		t.Fatal("GET /sse with --sse=false opened a stream")
	}
}
