package switchboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
)

// A client that stops reading must not slow the publisher, grow the
// server's memory, or cost the other members a single message: it is cut
// with 4001 and its leave is announced.
func TestSlowConsumerIsCutOthersGetEverything(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		const queue = 256 << 10
		s := start(t, switchboard.Options{Limits: switchboard.Limits{QueueBytes: queue, WriteTimeout: 20 * time.Second}})
		fast1, fast2 := dial(t, s, "fast1"), dial(t, s, "fast2")
		fast1.join("room")
		fast2.join("room")
		fast1.expect("join")

		slow := dialRawTCP(t, s, "user=slow")
		if err := slow.writeFrame(0x81, []byte(`{"type":"join","room":"room"}`)); err != nil {
			t.Fatal(err)
		}
		fast1.expect("join")
		fast2.expect("join")

		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)

		// 16 MiB in total: far more than the queue bound plus what the
		// kernel's socket buffers can absorb for the slow reader. The
		// publisher keeps a window of 16 messages ahead of the fast readers
		// (which share the slow one's bound and could otherwise be outrun
		// by an in-process publisher).
		const n, size, window = 2000, 8 << 10, 16
		payload := strings.Repeat("x", size)
		ctx := context.Background()
		// One channel per reader: the window holds for each of them.
		received := []chan struct{}{make(chan struct{}, n), make(chan struct{}, n)}
		published := make(chan error, 1)
		stop := make(chan struct{})
		t.Cleanup(func() { close(stop); <-published }) // before the hub closes
		go func() {
			for i := 0; i < n; i++ {
				if i >= window {
					for _, r := range received {
						select {
						case <-r:
						case <-stop:
							published <- nil
							return
						}
					}
				}
				data, _ := json.Marshal(map[string]any{"seq": i, "pad": payload})
				if _, err := s.hub.Publish(ctx, "room", data); err != nil {
					published <- fmt.Errorf("publish %d: %w", i, err)
					return
				}
			}
			published <- nil
		}()
		consumed := make(chan error, 2)
		for i, c := range []*client{fast1, fast2} {
			go func() { consumed <- consume(c, n, received[i]) }()
		}
		for range 2 {
			if err := <-consumed; err != nil {
				t.Fatal(err)
			}
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		// The process holds the clients too; what matters is that the 16
		// MiB did not pile up for the slow reader.
		if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 8<<20 {
			t.Errorf("heap grew by %d bytes while a slow reader was fed 16 MiB", grew)
		}
		code, frames := slow.readUntilClose()
		if code != 4001 {
			t.Fatalf("slow reader got close %d after %d frames, want 4001", code, frames)
		}
		if frames >= n {
			t.Fatalf("slow reader got all %d messages; it was never cut", frames)
		}
		t.Logf("slow reader got %d of %d messages before 4001", frames, n)
		waitFor(t, "slow reader removed", func() bool { return len(s.hub.UserConns("slow")) == 0 })
	})
}

// Broadcast encodes once and reaches every connection; the library API
// works without any client having joined anything.
func TestApplicationAPI(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{})
		ctx := context.Background()
		a1, a2, b := dial(t, s, "alice"), dial(t, s, "alice"), dial(t, s, "bob")
		b.join("news")

		if _, err := s.hub.Publish(ctx, "news", json.RawMessage(`{"headline":1}`)); err != nil {
			t.Fatal(err)
		}
		if m := b.expect("message"); m.str("from") != "server" || m.str("room") != "news" {
			t.Fatalf("got %v", m)
		}
		sent, err := s.hub.SendToUser(ctx, "alice", json.RawMessage(`"hi"`))
		id := sent.ID
		if err != nil || id == "" || sent.Offset != 0 {
			t.Fatalf("SendToUser: %+v %v", sent, err)
		}
		for _, c := range []*client{a1, a2} {
			if m := c.expect("message"); m.str("to") != "alice" || m.str("id") != id {
				t.Fatalf("got %v", m)
			}
		}
		if _, err := s.hub.Broadcast(ctx, json.RawMessage(`{"all":true}`)); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*client{a1, a2, b} {
			if m := c.expect("message"); m["broadcast"] != true {
				t.Fatalf("got %v", m)
			}
		}
		users, _ := s.hub.OnlineUsers(ctx)
		if fmt.Sprint(users) != "[alice bob]" || s.hub.Count() != 3 {
			t.Fatalf("online %v count %d", users, s.hub.Count())
		}
		if _, err := s.hub.Publish(ctx, "bad room", nil); err == nil {
			t.Fatal("publish to an invalid room name succeeded")
		}
		if _, err := s.hub.Publish(ctx, "news", json.RawMessage(`{bad`)); err == nil {
			t.Fatal("publish of invalid JSON succeeded")
		}
		if err := s.hub.Disconnect(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*client{a1, a2} {
			if reason := c.expectClose(4003); reason != "kicked" {
				t.Errorf("reason %q", reason)
			}
		}
		b.noFrame()
		waitFor(t, "alice gone", func() bool { return s.hub.Count() == 1 })
	})
}

// consume reads n messages in sequence, tolerating the slow reader's leave,
// and signals each on received.
func consume(c *client, n int, received chan<- struct{}) error {
	deadline := time.After(4 * wait)
	for seen := 0; seen < n; {
		var f frame
		select {
		case f = <-c.frames:
		case <-c.done:
			return fmt.Errorf("reader ended after %d messages: %v", seen, c.err)
		case <-deadline:
			return fmt.Errorf("only %d of %d messages arrived", seen, n)
		}
		switch f.str("type") {
		case "message":
			var d struct{ Seq int }
			raw, _ := json.Marshal(f["data"])
			_ = json.Unmarshal(raw, &d)
			if d.Seq != seen {
				return fmt.Errorf("got seq %d, want %d", d.Seq, seen)
			}
			seen++
			received <- struct{}{}
		case "leave":
			if f.str("user") != "slow" {
				return fmt.Errorf("unexpected %v", f)
			}
		default:
			return fmt.Errorf("unexpected %v", f)
		}
	}
	return nil
}
