package brokertest

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
)

// Failover runs three hubs of namespace ns with history for room "kept",
// each with a member joined, publishes through them, and calls kill (which
// takes down the broker server holding the room) while publishes are under
// way. It then checks, within bound from the kill:
//   - a publish is accepted again (the hubs follow the broker's failover by
//     themselves);
//   - every member receives it on the connection it had before the kill
//     (no client reconnected), and the publishes it saw arrived in order;
//   - every node's presence lists the members again;
//   - a member coming back with the newest offset it saw before the kill is
//     either given exactly what it missed (recovered:true, same epoch) or
//     told recovered:false with a new epoch: never a recovery that skips a
//     message or repeats an offset under the old epoch.
func (s Suite) Failover(t *testing.T, ns string, kill func(t *testing.T), bound time.Duration) {
	ctx := context.Background()
	hubA, srvA := historyNode(t, s.Make(t, ns), "a")
	hubB, srvB := historyNode(t, s.Make(t, ns), "b")
	hubC, srvC := historyNode(t, s.Make(t, ns), "c")
	members := []*client{dial(t, srvA, "xa"), dial(t, srvB, "xb"), dial(t, srvC, "xc")}
	var epoch string
	for i, m := range members {
		ack := m.joinKept(t, "j"+strconv.Itoa(i), nil, "")
		epoch = ack.Epoch
	}
	const before = 50
	for i := range before {
		if _, err := hubA.Publish(ctx, "kept", json.RawMessage(`{"n":`+strconv.Itoa(i)+`}`)); err != nil {
			t.Fatalf("publish %d before the failover: %v", i, err)
		}
	}
	var seen uint64 // the newest offset the members saw
	for _, m := range members {
		m.nextOffsets(t, 1, before)
	}
	seen = before

	// Publishes go on from node B while the server dies; some fail.
	stop := make(chan struct{})
	published := make(chan int, 1)
	go func() {
		n := 0
		tick := time.NewTicker(time.Millisecond) // a steady trickle, not a spin
		defer tick.Stop()
		for {
			select {
			case <-stop:
				published <- n
				return
			case <-tick.C:
			}
			if _, err := hubB.Publish(ctx, "kept", json.RawMessage(`{"during":`+strconv.Itoa(n)+`}`)); err == nil {
				n++
			}
		}
	}()
	// Let some publishes through before the kill.
	for _, m := range members {
		m.expect(t, func(f frame) bool { return f.Type == "message" && f.Room == "kept" })
	}
	killed := time.Now()
	kill(t)
	close(stop)
	t.Logf("%d publishes accepted while the server was killed", <-published)

	// Publishes after the kill, until every member has received one on the
	// connection it had: the hubs (and their broker subscriptions) followed
	// the failover. A publish may fail, or reach only some nodes, while
	// the nodes reconnect: the broker is at-most-once.
	got := make([]bool, len(members))
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for k := 0; ; k++ {
		if time.Since(killed) > bound {
			t.Fatalf("members that got a message published after the kill, within %v: %v", bound, got)
		}
		_, _ = hubA.Publish(ctx, "kept", json.RawMessage(`{"after":`+strconv.Itoa(k)+`}`))
		<-tick.C
		all := true
		for i, m := range members {
			for drained := false; !drained; {
				select {
				case f, ok := <-m.frames:
					if !ok {
						t.Fatalf("member %d lost its connection in the failover: %v", i, <-m.done)
					}
					if f.Type == "message" && f.Room == "kept" && strings.HasPrefix(string(f.Data), `{"after":`) {
						got[i] = true
					}
				default:
					drained = true
				}
			}
			all = all && got[i]
		}
		if all {
			break
		}
	}
	t.Logf("every member received again %v after the kill", time.Since(killed).Round(time.Millisecond))

	// Presence converges: every node lists the three members again.
	for _, h := range []*switchboard.Hub{hubA, hubB, hubC} {
		Eventually(t, "presence converges after the failover", func() bool {
			users, err := h.RoomUsers(ctx, "kept")
			return err == nil && strings.Join(users, ",") == "xa,xb,xc"
		})
	}
	t.Logf("presence converged %v after the kill", time.Since(killed).Round(time.Millisecond))

	// A member coming back with what it saw before the kill.
	back := dial(t, srvC, "back")
	ack := back.joinKept(t, "back", &seen, epoch)
	if ack.Recovered == nil {
		t.Fatalf("join with since: ack without recovered: %+v", ack)
	}
	if *ack.Recovered {
		if ack.Epoch != epoch {
			t.Fatalf("recovered:true with another epoch %q (was %q)", ack.Epoch, epoch)
		}
		// Exactly the messages after seen, offsets one by one, ending
		// with the marker.
		var msgs []frame
		for _, raw := range ack.Messages {
			var f frame
			if err := json.Unmarshal(raw, &f); err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, f)
		}
		for i, f := range msgs {
			if f.Offset == nil || *f.Offset != seen+uint64(i)+1 {
				t.Fatalf("recovered message %d has offset %v, want %d", i, f.Offset, seen+uint64(i)+1)
			}
		}
		if len(msgs) == 0 || !strings.HasPrefix(string(msgs[len(msgs)-1].Data), `{"after":`) {
			t.Fatal("recovery does not end with the messages published after the failover")
		}
		t.Logf("recovered %d messages in the same epoch", len(msgs))
	} else {
		if ack.Epoch == epoch || len(ack.Epoch) != 16 {
			t.Fatalf("recovered:false but the epoch is %q (was %q): want a new one", ack.Epoch, epoch)
		}
		t.Logf("history reported lost: new epoch")
	}
}
