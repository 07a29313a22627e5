package switchboard

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// After any mix of joins, leaves, kicks and disconnects racing each other,
// the hub holds no broker interest, no closing entries and no registry
// entries once every connection is gone.
func TestNothingLeftAfterRacingCloses(t *testing.T) {
	slowCallback := make(chan struct{})
	h, err := New(Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		// A slow OnDisconnect widens the window in which the socket can be
		// shut before the close is tracked.
		OnDisconnect: func(*Conn, int, string) {
			select {
			case <-slowCallback:
			case <-time.After(5 * time.Millisecond):
			}
		},
		Limits: Limits{Rate: 1e6, Burst: 1e6, HandshakeRate: 1e6, HandshakeBurst: 1e6, MaxConnsPerUser: 100},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	defer h.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "?user="
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := []string{"u1", "u2", "u3"}[i%3]
			c, _, err := websocket.Dial(ctx, url+user, nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.CloseNow()
			for j := 0; j < 20; j++ {
				room := []string{"r1", "r2"}[j%2]
				_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"join","room":"`+room+`"}`))
				_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"leave","room":"`+room+`"}`))
				_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"join","room":"`+room+`"}`))
			}
			if i%4 == 0 {
				_ = h.Disconnect(ctx, user)
			}
			if i%2 == 0 {
				_ = c.Close(websocket.StatusNormalClosure, "")
			}
		}()
	}
	wg.Wait()
	close(slowCallback)
	deadline := time.After(15 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		subs := h.interestCount()
		h.closingMu.Lock()
		closing := len(h.closing)
		h.closingMu.Unlock()
		conns, users, rooms := h.reg.counts()
		if subs == 0 && closing == 0 && conns == 0 && users == 0 && rooms == 0 && h.total.Load() == 0 {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("left behind: %d channels of interest, closing %d, conns %d, users %d, rooms %d, slots %d",
				subs, closing, conns, users, rooms, h.total.Load())
		case <-tick.C:
		}
	}
}
