package switchboard_test

import (
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
)

// A peer that completed the handshake and then went silent, without a FIN,
// is closed with 4000 once nothing has arrived for ping_interval +
// pong_timeout, and its leave is announced. The kernel keeps accepting the
// pings written to it the whole time, so only the silence gives it away.
func TestSilentPeerIsClosedWithPingTimeout(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{PingInterval: 150 * time.Millisecond, PongTimeout: 150 * time.Millisecond})
		watcher := dial(t, s, "watcher")
		watcher.join("r")

		ghost := dialRawTCP(t, s, "user=ghost")
		if err := ghost.writeFrame(0x81, []byte(`{"type":"join","room":"r"}`)); err != nil {
			t.Fatal(err)
		}
		if j := watcher.expect("join"); j.str("user") != "ghost" {
			t.Fatalf("got %v", j)
		}
		joined := time.Now()
		if l := watcher.expect("leave"); l.str("user") != "ghost" {
			t.Fatalf("got %v, want ghost's leave", l)
		}
		if silent := time.Since(joined); silent < 300*time.Millisecond {
			t.Fatalf("ghost dropped after %v, before ping_interval+pong_timeout", silent)
		}
		// What the ghost would read if it came back: pings, then 4000.
		code, frames := ghost.readUntilClose()
		if code != 4000 || frames == 0 {
			t.Fatalf("ghost read %d frames then close %d; want pings then 4000", frames, code)
		}
		waitFor(t, "ghost removed", func() bool { return len(s.hub.UserConns("ghost")) == 0 })
	})
}

// A client that answers pings stays connected across many intervals.
func TestResponsivePeerStays(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{PingInterval: 50 * time.Millisecond, PongTimeout: 50 * time.Millisecond})
		a := dial(t, s, "a")
		a.autoPong.Store(false)
		for i := 0; i < 8; i++ { // 8 intervals: well past ping_interval+pong_timeout
			a.expect("ping")
			a.sendRaw(`{"type":"pong"}`)
		}
		a.noFrame()
		if s.hub.Count() != 1 {
			t.Fatalf("count %d", s.hub.Count())
		}
	})
}
