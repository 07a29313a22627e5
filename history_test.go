package switchboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
)

func historyOpts(size int) switchboard.Options {
	return switchboard.Options{
		History: switchboard.HistoryOptions{Rooms: []string{"kept", "log:*"}, Size: size, Users: true},
		Limits:  switchboard.Limits{Rate: 1e6, Burst: 1e6},
	}
}

func offsetOf(f frame) uint64 { n, _ := f["offset"].(float64); return uint64(n) }

// publishSeen publishes data to room from c and returns c's own copy of
// the message, which may arrive before or after the ack.
func publishSeen(c *client, room string, data any) frame {
	c.t.Helper()
	ack, others := c.request(map[string]any{"type": "publish", "room": room, "data": data})
	if ack.str("type") != "ack" {
		c.t.Fatalf("publish: %v", ack)
	}
	for _, f := range others {
		if f.str("type") == "message" {
			return f
		}
	}
	return c.expect("message")
}

// A room matching the history patterns numbers its messages; its join ack
// gives the newest offset and the epoch; other rooms are unchanged.
func TestHistoryOffsetsAndJoinAck(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, historyOpts(10))
		a := dial(t, s, "alice")
		ack := a.join("kept")
		epoch := ack.str("epoch")
		if ack["offset"] != float64(0) || len(epoch) != 16 {
			t.Fatalf("ack of an empty kept room: %v", ack)
		}
		for i := 1; i <= 3; i++ {
			if m := publishSeen(a, "kept", i); offsetOf(m) != uint64(i) {
				t.Fatalf("message %d has offset %v", i, m["offset"])
			}
		}
		b := dial(t, s, "bob")
		ack = b.join("kept")
		if offsetOf(ack) != 3 || ack.str("epoch") != epoch {
			t.Fatalf("ack after three messages: %v", ack)
		}
		plain := b.join("plain")
		if _, has := plain["offset"]; has {
			t.Fatalf("a room without history got an offset: %v", plain)
		}
		if m := publishSeen(b, "plain", 1); m["offset"] != nil {
			t.Fatalf("a message in a room without history has an offset: %v", m)
		}
	})
}

// A client that comes back with since and the epoch gets exactly what it
// missed in the ack, then live messages with no gap and no duplicate,
// while a publisher keeps going at full speed across the rejoin.
func TestHistoryRecoveryWhilePublishing(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		// Bounds wide enough for what a full-speed publisher writes while
		// the client is away.
		opts := historyOpts(1 << 20)
		opts.History.MaxBytes = 256 << 20
		opts.Limits.QueueBytes = 256 << 20
		s := start(t, opts)
		ctx := context.Background()
		c := dial(t, s, "carol")
		ack := c.join("kept")
		epoch := ack.str("epoch")
		// The publisher starts before the client comes back and goes on
		// until the client has seen the live stream catch up.
		var published atomic.Uint64
		progress := make(chan struct{}, 1)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				p, err := s.hub.Publish(ctx, "kept", json.RawMessage(`{"n":1}`))
				if err != nil {
					return
				}
				published.Store(p.Offset)
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		})
		defer func() { close(stop); wg.Wait() }()
		// Read a little live, then drop off.
		var last uint64
		for last < 50 {
			last = offsetOf(c.expect("message"))
		}
		c.close()
		deadline := time.After(wait)
		for published.Load() < last+200 {
			select {
			case <-progress:
			case <-deadline:
				t.Fatal("the publisher stalled")
			}
		}
		back := dial(t, s, "carol")
		ack, others := back.request(map[string]any{"type": "join", "room": "kept", "since": last, "epoch": epoch})
		if ack.str("type") != "ack" || ack["recovered"] != true {
			t.Fatalf("rejoin: %v (others %v)", ack, others)
		}
		want := last + 1
		for _, raw := range ack["messages"].([]any) {
			m := frame(raw.(map[string]any))
			if offsetOf(m) != want {
				t.Fatalf("recovered offset %d, want %d", offsetOf(m), want)
			}
			want++
		}
		if want-1 != offsetOf(ack) {
			t.Fatalf("recovered up to %d, ack says the room is at %d", want-1, offsetOf(ack))
		}
		// Live messages continue exactly where the ack ended.
		for range 300 {
			if got := offsetOf(back.expect("message")); got != want {
				t.Fatalf("live offset %d after recovery, want %d", got, want)
			}
			want++
		}
	})
}

// An unknown epoch, or a since older than what is kept, gets
// recovered:false with the room's current offset and epoch, never silently
// partial data.
func TestHistoryUnrecoverable(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, historyOpts(5))
		ctx := context.Background()
		var last switchboard.Published
		for range 12 {
			p, err := s.hub.Publish(ctx, "kept", json.RawMessage(`1`))
			if err != nil {
				t.Fatal(err)
			}
			last = p
		}
		c := dial(t, s, "dave")
		for _, tc := range []struct {
			name  string
			since uint64
			epoch string
		}{
			{"unknown epoch", 10, "0123456789abcdef"},
			{"older than kept", 3, last.Epoch},
			{"ahead of the room", 99, last.Epoch},
		} {
			ack, _ := c.request(map[string]any{"type": "join", "room": "kept", "since": tc.since, "epoch": tc.epoch})
			msgs, _ := ack["messages"].([]any)
			if ack["recovered"] != false || len(msgs) != 0 || offsetOf(ack) != 12 || ack.str("epoch") != last.Epoch {
				t.Fatalf("%s: %v", tc.name, ack)
			}
			c.mustAck(map[string]any{"type": "leave", "room": "kept"})
		}
		// Within what is kept: recovered.
		ack, _ := c.request(map[string]any{"type": "join", "room": "kept", "since": 8, "epoch": last.Epoch})
		if msgs, _ := ack["messages"].([]any); ack["recovered"] != true || len(msgs) != 4 {
			t.Fatalf("since 8 of 12 with 5 kept: %v", ack)
		}
	})
}

// Direct messages are kept per user when asked: a phone that was away
// recovers them by joining its private room with since.
func TestHistoryOfDirectMessages(t *testing.T) {
	s := startStd(t, historyOpts(50))
	ctx := context.Background()
	phone := dial(t, s, "erin")
	ack := phone.join("user:erin")
	if offsetOf(ack) != 0 {
		t.Fatalf("private room ack: %v", ack)
	}
	first, err := s.hub.SendToUser(ctx, "erin", json.RawMessage(`"one"`))
	if err != nil || first.Offset != 1 {
		t.Fatalf("SendToUser: %+v %v", first, err)
	}
	if m := phone.expect("message"); offsetOf(m) != 1 || m.str("to") != "erin" {
		t.Fatalf("direct message: %v", m)
	}
	phone.close()
	for i := range 3 {
		if _, err := s.hub.SendToUser(ctx, "erin", json.RawMessage(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	back := dial(t, s, "erin")
	ack, _ = back.request(map[string]any{"type": "join", "room": "user:erin", "since": 1, "epoch": first.Epoch})
	if msgs, _ := ack["messages"].([]any); ack["recovered"] != true || len(msgs) != 3 {
		t.Fatalf("recovery of direct messages: %v", ack)
	}
}

// The in-memory store keeps at most Size messages and MaxBytes bytes.
func TestHistoryBounds(t *testing.T) {
	opts := historyOpts(100)
	opts.History.MaxBytes = 2000
	s := startStd(t, opts)
	ctx := context.Background()
	data := json.RawMessage(fmt.Sprintf(`"%0300d"`, 0))
	for range 20 {
		if _, err := s.hub.Publish(ctx, "kept", data); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.hub.History(ctx, "kept", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(h.Messages); n == 0 || n > 2000/300 || h.Complete || h.Offset != 20 {
		t.Fatalf("kept %d messages of 20 with 300+ bytes each under a 2000-byte bound (complete %v, offset %d)", n, h.Complete, h.Offset)
	}
	if _, err := s.hub.History(ctx, "plain", 0, 10); err == nil {
		t.Fatal("History of a room without history did not fail")
	}
}

// echo:false holds in a history room: the connection's own message never
// comes back, not even through the gap fill the next message would cause.
func TestHistoryEchoOffStaysOff(t *testing.T) {
	s := startStd(t, historyOpts(50))
	a := dial(t, s, "alice")
	a.mustAck(map[string]any{"type": "join", "room": "kept", "echo": false})
	b := dial(t, s, "bob")
	b.join("kept")
	a.mustAck(map[string]any{"type": "publish", "room": "kept", "data": "mine"})
	publishSeen(b, "kept", "bobs")
	if m := a.expect("message"); m["data"] != "bobs" || offsetOf(m) != 2 {
		t.Fatalf("alice got %v, want bob's message at offset 2", m)
	}
	a.noFrame()
}

// A member that sends join again (no since) while messages flow loses
// none and gets none twice.
func TestHistoryMemberJoiningAgainLosesNothing(t *testing.T) {
	opts := historyOpts(1 << 16)
	opts.Limits.QueueBytes = 64 << 20
	s := startStd(t, opts)
	a := dial(t, s, "alice")
	a.join("kept")
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		// A steady stream the client can keep up with, race detector on.
		tick := time.NewTicker(100 * time.Microsecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := s.hub.Publish(ctx, "kept", json.RawMessage(`1`)); err != nil {
				return
			}
		}
	})
	var next uint64
	for range 50 {
		_, others := a.request(map[string]any{"type": "join", "room": "kept"})
		for _, f := range others {
			if f.str("type") != "message" {
				continue
			}
			if o := offsetOf(f); next != 0 && o != next {
				close(stop)
				wg.Wait()
				t.Fatalf("offset %d, want %d", o, next)
			}
			next = offsetOf(f) + 1
		}
	}
	close(stop)
	wg.Wait()
}

// A phone coming back: direct messages sent while it was away, and one
// sent after it connected but before its resume, all come in the ack, in
// order, and none comes twice.
func TestHistoryDirectMessagesWaitForTheResume(t *testing.T) {
	s := startStd(t, historyOpts(50))
	ctx := context.Background()
	phone := dial(t, s, "erin")
	ack := phone.join("user:erin")
	epoch := ack.str("epoch")
	phone.close()
	if _, err := s.hub.SendToUser(ctx, "erin", json.RawMessage(`"away"`)); err != nil {
		t.Fatal(err)
	}
	back := dial(t, s, "erin")
	if _, err := s.hub.SendToUser(ctx, "erin", json.RawMessage(`"between"`)); err != nil {
		t.Fatal(err)
	}
	ack, others := back.request(map[string]any{"type": "join", "room": "user:erin", "since": 0, "epoch": epoch})
	msgs, _ := ack["messages"].([]any)
	if len(others) != 0 || ack["recovered"] != true || len(msgs) != 2 ||
		msgs[0].(map[string]any)["data"] != "away" || msgs[1].(map[string]any)["data"] != "between" {
		t.Fatalf("resume: %v (before the ack: %v)", ack, others)
	}
	if _, err := s.hub.SendToUser(ctx, "erin", json.RawMessage(`"after"`)); err != nil {
		t.Fatal(err)
	}
	if m := back.expect("message"); m["data"] != "after" || offsetOf(m) != 3 {
		t.Fatalf("live after the resume: %v", m)
	}
}

// A direct message that reaches a new connection before it joins its
// private room without since is delivered, not taken for history.
func TestHistoryDirectMessageBeforeAPlainJoin(t *testing.T) {
	s := startStd(t, historyOpts(50))
	c := dial(t, s, "fay")
	if _, err := s.hub.SendToUser(context.Background(), "fay", json.RawMessage(`"early"`)); err != nil {
		t.Fatal(err)
	}
	ack, others := c.request(map[string]any{"type": "join", "room": "user:fay"})
	if offsetOf(ack) != 1 {
		t.Fatalf("ack %v", ack)
	}
	for _, f := range others {
		if f.str("type") == "message" && f["data"] == "early" {
			return
		}
	}
	if m := c.expect("message"); m["data"] != "early" {
		t.Fatalf("the early direct message was lost: got %v after the ack", m)
	}
}
