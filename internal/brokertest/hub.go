package brokertest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboardhq/switchboard"
)

// frame is the subset of server frames the cluster test looks at.
type frame struct {
	Type string          `json:"type"`
	Ref  string          `json:"ref"`
	Room string          `json:"room"`
	To   string          `json:"to"`
	From string          `json:"from"`
	User string          `json:"user"`
	Data json.RawMessage `json:"data"`
	// History rooms.
	Offset    *uint64           `json:"offset"`
	Epoch     string            `json:"epoch"`
	Recovered *bool             `json:"recovered"`
	Messages  []json.RawMessage `json:"messages"`
}

type client struct {
	conn   *websocket.Conn
	frames chan frame
	done   chan error // the read error that ended the connection
}

func dial(t *testing.T, srv *httptest.Server, user string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws?user="+user, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	conn.SetReadLimit(16 << 20) // a recovering join's ack carries up to KeptMessages messages
	c := &client{conn: conn, frames: make(chan frame, 8192), done: make(chan error, 1)}
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				c.done <- err
				close(c.frames)
				return
			}
			var f frame
			if json.Unmarshal(b, &f) == nil {
				c.frames <- f
			}
		}
	}()
	t.Cleanup(func() { _ = conn.CloseNow() })
	c.expect(t, func(f frame) bool { return f.Type == "welcome" })
	return c
}

func (c *client) send(t *testing.T, v string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(v)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// expect skips frames until one matches.
func (c *client) expect(t *testing.T, match func(frame) bool) frame {
	t.Helper()
	deadline := time.After(Wait)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				t.Fatalf("connection closed while waiting for a frame: %v", <-c.done)
			}
			if match(f) {
				return f
			}
		case <-deadline:
			t.Fatal("timed out waiting for a frame")
		}
	}
}

func startHub(t *testing.T, b switchboard.Broker) (*switchboard.Hub, *httptest.Server) {
	return startNode(t, switchboard.Options{Broker: b})
}

// startNode runs a hub with opts (logging discarded) behind a test server,
// both closed when the test ends.
func startNode(t *testing.T, opts switchboard.Options) (*switchboard.Hub, *httptest.Server) {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	hub, err := switchboard.New(opts)
	if err != nil {
		t.Fatalf("switchboard.New: %v", err)
	}
	srv := httptest.NewServer(hub.Handler())
	t.Cleanup(func() {
		_ = hub.Close()
		srv.Close()
	})
	return hub, srv
}

// HubCluster runs two hubs on two brokers of namespace ns and checks that
// room publishes, sends to a user and kicks cross nodes.
func (s Suite) HubCluster(t *testing.T, ns string) {
	ctx := context.Background()
	hubA, srvA := startHub(t, s.Make(t, ns))
	hubB, srvB := startHub(t, s.Make(t, ns))

	alice := dial(t, srvA, "alice")
	bob := dial(t, srvB, "bob")
	alice.send(t, `{"type":"join","room":"r","id":"j1"}`)
	alice.expect(t, func(f frame) bool { return f.Type == "ack" && f.Ref == "j1" })
	bob.send(t, `{"type":"join","room":"r","id":"j2"}`)
	bob.expect(t, func(f frame) bool { return f.Type == "ack" && f.Ref == "j2" })
	s.expectSubscribers(t, ns, "room:r", 2)

	alice.send(t, `{"type":"publish","room":"r","data":{"text":"hi from A"},"id":"p1"}`)
	isHi := func(f frame) bool {
		return f.Type == "message" && f.Room == "r" && f.From == "alice" && string(f.Data) == `{"text":"hi from A"}`
	}
	bob.expect(t, isHi)   // across nodes
	alice.expect(t, isHi) // echoed on the publishing node

	if _, err := hubB.SendToUser(ctx, "alice", json.RawMessage(`{"dm":1}`)); err != nil {
		t.Fatal(err)
	}
	alice.expect(t, func(f frame) bool {
		return f.Type == "message" && f.To == "alice" && f.From == switchboard.ServerUser && string(f.Data) == `{"dm":1}`
	})

	s.expectSubscribers(t, ns, "user:bob", 1)
	if err := hubA.Disconnect(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-bob.done:
		if code := websocket.CloseStatus(err); code != switchboard.CloseKicked {
			t.Fatalf("bob's connection ended with %v (code %d), want close code %d", err, code, switchboard.CloseKicked)
		}
	case <-time.After(Wait):
		t.Fatal("bob was not disconnected across nodes")
	}
	// alice, on the other node, is still connected.
	alice.send(t, `{"type":"ping","id":"still-here"}`)
	alice.expect(t, func(f frame) bool { return f.Type == "ack" && f.Ref == "still-here" })
	if err := firstErr(alice.done); err != nil {
		t.Fatalf("alice disconnected: %v", err)
	}
}

func firstErr(c chan error) error {
	select {
	case err := <-c:
		if err == nil {
			return errors.New("closed")
		}
		return err
	default:
		return nil
	}
}
