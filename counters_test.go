package switchboard_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboardhq/switchboard"
)

type recordingObserver struct {
	mu     sync.Mutex
	rtts   []time.Duration
	queues int
	rtt    chan struct{}
}

func (o *recordingObserver) PingRTT(d time.Duration) {
	o.mu.Lock()
	o.rtts = append(o.rtts, d)
	o.mu.Unlock()
	select {
	case o.rtt <- struct{}{}:
	default:
	}
}

func (o *recordingObserver) QueueBytes(int64) {
	o.mu.Lock()
	o.queues++
	o.mu.Unlock()
}

func TestCountersAndObserver(t *testing.T) {
	obs := &recordingObserver{rtt: make(chan struct{}, 1)}
	s := startStd(t, switchboard.Options{Observer: obs, PingInterval: 50 * time.Millisecond, PongTimeout: time.Second})
	a, b := dial(t, s, "a"), dial(t, s, "b")
	a.join("r")
	b.join("r")
	a.expect("join")
	a.mustAck(map[string]any{"type": "publish", "room": "r", "data": 1})
	b.expect("message")
	a.sendRaw("nonsense")
	a.expect("error")
	handshake(t, s, "", nil) // no user: 401
	select {
	case <-obs.rtt:
	case <-time.After(wait):
		t.Fatal("no ping round trip observed")
	}
	_ = b.conn.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "close counted", func() bool { return s.hub.Counters().Closes[1000] == 1 })

	c := s.hub.Counters()
	if c.ConnectionsOpened != 2 || c.MessagesIn["join"] != 2 || c.MessagesIn["publish"] != 1 || c.MessagesIn["invalid"] != 1 {
		t.Errorf("counts %+v", c)
	}
	if c.HandshakeRejections["unauthorized"] != 1 || c.Deliveries < 2 || c.BytesOut == 0 || c.BytesIn == 0 {
		t.Errorf("counts %+v", c)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.queues == 0 || obs.rtts[0] <= 0 || obs.rtts[0] > wait {
		t.Errorf("observer saw %d queue samples, rtts %v", obs.queues, obs.rtts)
	}
}

func TestPresenceEventsArePerUser(t *testing.T) {
	var mu sync.Mutex
	var events []string
	offline := make(chan struct{})
	s := startStd(t, switchboard.Options{OnPresence: func(e switchboard.PresenceEvent) {
		mu.Lock()
		events = append(events, e.Kind+" "+e.User+" "+e.Room)
		mu.Unlock()
		if e.Kind == switchboard.UserOffline {
			close(offline)
		}
	}})
	a1, a2 := dial(t, s, "a"), dial(t, s, "a")
	a1.join("r")
	a2.join("r")
	_ = a1.conn.Close(websocket.StatusNormalClosure, "")
	a2.mustAck(map[string]any{"type": "leave", "room": "r"})
	_ = a2.conn.Close(websocket.StatusNormalClosure, "")
	select {
	case <-offline:
	case <-time.After(wait):
		t.Fatal("no user.offline")
	}
	mu.Lock()
	defer mu.Unlock()
	want := "[user.online a  room.join a r room.leave a r user.offline a ]"
	if got := fmt.Sprint(events); got != want {
		t.Fatalf("events %s, want %s", got, want)
	}
}
