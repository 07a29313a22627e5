package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboardhq/switchboard/server/config"
)

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testServer builds a node from flags (on loopback, --auth=none, node
// test-node) without running it, and closes it when the test ends.
func testServer(t testing.TB, args ...string) (*Server, *lockedBuffer) {
	t.Helper()
	cfg, err := config.Load(append([]string{"--addr=127.0.0.1:0", "--node-id=test-node"}, args...),
		func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	srv, err := New(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
	})
	return srv, logs
}

// call sends one request to h; hdr is name, value pairs.
func call(t testing.TB, h http.Handler, method, path, key, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// decode parses a JSON object answer.
func decode(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("answer %d is not a JSON object: %q", rec.Code, rec.Body.String())
	}
	return m
}

// wantError checks status, error code and that message is non-empty.
func wantError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) map[string]any {
	t.Helper()
	m := decode(t, rec)
	if rec.Code != status || m["error"] != code {
		t.Fatalf("got %d %s, want %d error %q", rec.Code, rec.Body.String(), status, code)
	}
	if msg, _ := m["message"].(string); msg == "" {
		t.Errorf("error without message: %s", rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	return m
}

// wsConn is a test WebSocket client of a server served by httptest.
type wsConn struct {
	t *testing.T
	c *websocket.Conn
}

func dialWS(t *testing.T, ctx context.Context, base, user string) *wsConn {
	t.Helper()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws?user="+user, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	w := &wsConn{t: t, c: c}
	w.next(ctx, "welcome")
	return w
}

// next reads frames until one of type typ (skipping pings and others).
func (w *wsConn) next(ctx context.Context, typ string) map[string]any {
	w.t.Helper()
	for {
		_, b, err := w.c.Read(ctx)
		if err != nil {
			w.t.Fatalf("waiting for %s: %v", typ, err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			w.t.Fatalf("frame %q: %v", b, err)
		}
		if m["type"] == typ {
			return m
		}
	}
}

func (w *wsConn) join(ctx context.Context, room string) {
	w.t.Helper()
	if err := w.c.Write(ctx, websocket.MessageText, []byte(`{"type":"join","room":"`+room+`","id":"j"}`)); err != nil {
		w.t.Fatal(err)
	}
	if ack := w.next(ctx, "ack"); ack["ref"] != "j" {
		w.t.Fatalf("join answered %v", ack)
	}
}
