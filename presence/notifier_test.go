package presence

import (
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// Events reach the callback in order, a panic in it is counted and does
// not stop the next event, and Stop delivers what is queued first.
func TestNotifierOrderPanicsAndStop(t *testing.T) {
	var got []string
	var panics atomic.Int32
	var n Notifier
	n.Start(func(ev Event) {
		if ev.User == "boom" {
			panic("callback failed")
		}
		got = append(got, ev.User)
	}, slog.New(slog.NewTextHandler(io.Discard, nil)), func() { panics.Add(1) })
	for _, u := range []string{"a", "boom", "b", "c"} {
		n.Add(Event{Kind: UserOnline, User: u})
	}
	n.Stop()
	if !slices.Equal(got, []string{"a", "b", "c"}) || panics.Load() != 1 {
		t.Fatalf("delivered %v with %d panics, want [a b c] and 1", got, panics.Load())
	}
	var idle Notifier // never started: Add and Stop do nothing
	idle.Add(Event{User: "x"})
	idle.Stop()
}

// A room's snapshot is as of the last flush: pending joins are left out,
// pending leaves put back, and the next diff lists each user once with its
// last change.
func TestDiffsSnapshotAndTake(t *testing.T) {
	var d Diffs
	d.Add("r", "new", true)
	d.Add("r", "gone", false)
	d.Add("r", "flip", true)
	d.Add("r", "flip", false)
	snap, err := d.Snapshot("r", func() ([]string, error) { return []string{"new", "old"}, nil })
	if err != nil || string(snap) != `["flip","gone","old"]` {
		t.Fatalf("snapshot %s %v", snap, err)
	}
	rooms := d.Take()
	joins, leaves := rooms["r"].Sorted()
	if !slices.Equal(joins, []string{"new"}) || !slices.Equal(leaves, []string{"flip", "gone"}) {
		t.Fatalf("diff: joins %v leaves %v", joins, leaves)
	}
	if d.AddIfPending("r", "x", true) {
		t.Fatal("a change was added to a diff already taken")
	}
}

// TestNotifierStopWithWakePending stops a notifier while an Add's
// wake-up is pending and the runner is busy. Stop used to block for ever:
// the runner saw the stop, returned, and never took the wake-up that kept
// Stop's own from fitting.
func TestNotifierStopWithWakePending(t *testing.T) {
	gate := make(chan struct{})
	first := make(chan struct{})
	var n Notifier
	calls := 0
	n.Start(func(Event) {
		if calls++; calls == 1 {
			close(first)
			<-gate // the runner is busy while the test sets things up
		}
	}, slog.New(slog.DiscardHandler), nil)
	n.Add(Event{Kind: "join", User: "a"})
	<-first
	n.Add(Event{Kind: "join", User: "b"}) // its wake-up fills the buffer
	stopped := make(chan struct{})
	go func() { n.Stop(); close(stopped) }()
	deadline := time.Now().Add(10 * time.Second)
	for { // wait, with a deadline, until Stop has marked the notifier
		n.mu.Lock()
		s := n.stopped
		n.mu.Unlock()
		if s {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Stop never marked the notifier stopped")
		}
		runtime.Gosched()
	}
	close(gate)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return")
	}
	if calls != 2 {
		t.Errorf("callback ran %d times, want 2 (Stop delivers what is queued)", calls)
	}
}
