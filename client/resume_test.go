package client

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
)

// expectSeq reads messages from..to of room and checks that each comes once,
// in order, with recovered set as want says.
func expectSeq(t *testing.T, c *Client, from, to int, recovered func(n int) bool) {
	t.Helper()
	for n := from; n <= to; n++ {
		m := next(t, c)
		if string(m.Data) != strconv.Itoa(n) {
			t.Fatalf("got message %s (offset %d), want %d", m.Data, m.Offset, n)
		}
		if m.Offset != uint64(n) {
			t.Fatalf("message %d has offset %d", n, m.Offset)
		}
		if m.Recovered != recovered(n) {
			t.Fatalf("message %d: Recovered %v", n, m.Recovered)
		}
	}
}

func TestHistoryResumeAfterNetworkLoss(t *testing.T) {
	hub, url := startHub(t, switchboard.Options{History: switchboard.HistoryOptions{Rooms: []string{"h:*"}}})
	nets := newConns(t)
	c, st := dialTest(t, url, "alice", Options{HTTPClient: nets.client()})
	res, err := c.Join(ctxT(t), "h:1")
	if err != nil || !res.History || res.Offset != 0 || res.Epoch == "" {
		t.Fatalf("join: %+v, %v", res, err)
	}
	for n := 1; n <= 3; n++ {
		publish(t, hub, "h:1", strconv.Itoa(n))
	}
	expectSeq(t, c, 1, 3, func(int) bool { return false })
	if off, epoch, ok := c.Position("h:1"); !ok || off != 3 || epoch != res.Epoch {
		t.Fatalf("position %d %q %v", off, epoch, ok)
	}

	// The network goes; while the client cannot get back, more is published.
	release := nets.hold()
	nets.cut()
	st.expect(t, StateConnecting)
	for n := 4; n <= 8; n++ {
		publish(t, hub, "h:1", strconv.Itoa(n))
	}
	release()
	e := nextEvent(t, c, EventRejoin)
	if e.Room != "h:1" || !e.Recovered || e.Err != nil || e.Offset != 8 || !slicesEqual(e.Users, "alice") {
		t.Fatalf("rejoin %+v", e)
	}
	st.expect(t, StateConnected)
	for n := 9; n <= 10; n++ {
		publish(t, hub, "h:1", strconv.Itoa(n))
	}
	expectSeq(t, c, 4, 10, func(n int) bool { return n <= 8 })
	// Nothing came twice: the next message is the next one published.
	publish(t, hub, "h:1", "11")
	expectSeq(t, c, 11, 11, func(int) bool { return false })
}

func TestHistoryGapReported(t *testing.T) {
	hub, url := startHub(t, switchboard.Options{History: switchboard.HistoryOptions{Rooms: []string{"h:*"}, Size: 2}})
	nets := newConns(t)
	c, st := dialTest(t, url, "alice", Options{HTTPClient: nets.client()})
	if _, err := c.Join(ctxT(t), "h:1"); err != nil {
		t.Fatal(err)
	}
	publish(t, hub, "h:1", "1")
	expectSeq(t, c, 1, 1, func(int) bool { return false })
	release := nets.hold()
	nets.cut()
	st.expect(t, StateConnecting)
	for n := 2; n <= 6; n++ { // more than the room keeps
		publish(t, hub, "h:1", strconv.Itoa(n))
	}
	release()
	e := nextEvent(t, c, EventRejoin)
	if e.Recovered || e.Err != nil || e.Offset != 6 {
		t.Fatalf("rejoin %+v, want Recovered false at offset 6", e)
	}
	if off, _, ok := c.Position("h:1"); !ok || off != 6 {
		t.Fatalf("position %d %v: the client goes on from the ack", off, ok)
	}
	st.expect(t, StateConnected)
	publish(t, hub, "h:1", "7")
	expectSeq(t, c, 7, 7, func(int) bool { return false })
}

func TestJoinSinceExplicit(t *testing.T) {
	hub, url := startHub(t, switchboard.Options{History: switchboard.HistoryOptions{Rooms: []string{"h:*"}}})
	first, _ := dialTest(t, url, "alice", Options{})
	res, err := first.Join(ctxT(t), "h:1")
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 4; n++ {
		publish(t, hub, "h:1", strconv.Itoa(n))
	}
	expectSeq(t, first, 1, 2, func(int) bool { return false })
	_ = first.Close()

	// A later client resumes from a saved position.
	c, _ := dialTest(t, url, "alice", Options{})
	res2, err := c.Join(ctxT(t), "h:1", Since(2, res.Epoch))
	if err != nil || !res2.Recovered || res2.Offset != 4 {
		t.Fatalf("join since: %+v, %v", res2, err)
	}
	expectSeq(t, c, 3, 4, func(int) bool { return true })
}

func TestSlowConsumerReconnectsWithoutLoss(t *testing.T) {
	hub, url := startHub(t, switchboard.Options{History: switchboard.HistoryOptions{Rooms: []string{"h:*"}}})
	c, st := dialTest(t, url, "alice", Options{MessageBuffer: 1, SlowConsumerTimeout: 50 * time.Millisecond})
	if _, err := c.Join(ctxT(t), "h:1"); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 5; n++ {
		publish(t, hub, "h:1", strconv.Itoa(n))
	}
	// Nobody reads: the client gives the connection up.
	sc := st.expect(t, StateReconnecting)
	var ce *CloseError
	if !errors.As(sc.Err, &ce) || ce.Code != 4001 {
		t.Fatalf("reconnecting after %v, want 4001", sc.Err)
	}
	// Reading again, everything comes, once and in order.
	for n := 1; n <= 5; n++ {
		m := next(t, c)
		if string(m.Data) != strconv.Itoa(n) {
			t.Fatalf("got %s, want %d", m.Data, n)
		}
	}
	publish(t, hub, "h:1", "6")
	if m := next(t, c); string(m.Data) != "6" {
		t.Fatalf("got %s after the recovered ones, want 6", m.Data)
	}
}

func slicesEqual(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// Position counts a message as soon as the application has it: an
// application that saves its place after every message never saves one
// behind what it processed.
func TestPositionFollowsDelivery(t *testing.T) {
	hub, url := startHub(t, switchboard.Options{History: switchboard.HistoryOptions{Rooms: []string{"h:*"}, Size: 500}})
	c, _ := dialTest(t, url, "alice", Options{})
	if _, err := c.Join(ctxT(t), "h:1"); err != nil {
		t.Fatal(err)
	}
	const n = 300
	go func() {
		for i := 1; i <= n; i++ {
			if _, err := hub.Publish(context.Background(), "h:1", json.RawMessage(strconv.Itoa(i))); err != nil {
				return
			}
		}
	}()
	for i := 1; i <= n; i++ {
		m := next(t, c)
		if off, _, ok := c.Position("h:1"); !ok || off < m.Offset {
			t.Fatalf("after receiving offset %d, Position says %d (%v)", m.Offset, off, ok)
		}
	}
}
