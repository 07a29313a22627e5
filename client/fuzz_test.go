package client

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"
)

// fuzzClient is a client with no connection behind it, its read loop's
// frame handling fed by the fuzzer instead: one join waiting for its ack
// (ref "1", room "r", since 5), one rejoin (ref "2", room "h", since 7) and
// one presence request (ref "3", room "r").
func fuzzClient(t *testing.T) (*Client, *session) {
	o := Options{MessageBuffer: 64, EventBuffer: 64, SlowConsumerTimeout: time.Millisecond}.withDefaults()
	c := &Client{
		opts: o, log: o.Logger,
		msgs: make(chan Message, o.MessageBuffer), events: make(chan Event, o.EventBuffer),
		done: make(chan struct{}), changed: make(chan struct{}), rooms: map[string]*room{},
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	t.Cleanup(c.cancel)
	s := newSession(nil, Welcome{PingInterval: time.Second})
	since5, since7 := uint64(5), uint64(7)
	c.rooms["h"] = &room{pos: true, offset: 7, epoch: "e"}
	for id, p := range map[string]*pending{
		"1": {kind: "join", room: "r", since: &since5},
		"2": {kind: "join", room: "h", since: &since7, rejoin: true},
		"3": {kind: "presence", room: "r", seq: 1},
	} {
		p.ch = make(chan result, 1)
		s.add(id, p)
	}
	return c, s
}

// FuzzServerFrames feeds arbitrary frames, one per line, to the code that
// handles what a server sends: nothing panics, a recovered message is
// never one the join already had, and the client refuses a frame only
// when the application's buffer is full.
func FuzzServerFrames(f *testing.F) {
	for _, seed := range []string{
		`{"type":"ping"}`,
		`{"type":"message","room":"r","from":"u","data":{"a":1},"id":"x","offset":9,"ts":1700000000000}`,
		`{"type":"message","to":"alice","from":"server","data":"hi","id":"y","offset":3}`,
		`{"type":"ack","ref":"1","users":["a"],"offset":8,"epoch":"e","recovered":true,"messages":[{"type":"message","room":"r","data":1,"offset":5},{"type":"message","room":"r","data":2,"offset":6}]}`,
		`{"type":"ack","ref":"2","users":[],"offset":9,"epoch":"e2","recovered":false}`,
		`{"type":"presence","room":"r","users":["a","b"]}` + "\n" + `{"type":"ack","ref":"3"}`,
		`{"type":"join","room":"r","user":"b"}` + "\n" + `{"type":"leave","room":"r","user":"b"}`,
		`{"type":"presence_diff","room":"r","joins":["c"],"leaves":null}`,
		`{"type":"error","ref":"1","code":"forbidden","message":"no"}` + "\n" + `{"type":"error","code":"rate_limited"}`,
		`{"type":"ack","ref":"1","recovered":true,"messages":[null,1,"x",{"offset":-1},{"type":"message","offset":18446744073709551615}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, s := fuzzClient(t)
		for _, line := range bytes.Split(in, []byte("\n")) {
			var fr frame
			if json.Unmarshal(line, &fr) != nil {
				continue // the read loop skips what does not decode
			}
			full := len(c.msgs) == cap(c.msgs)
			if !c.handle(s, &fr) && !full && len(c.msgs) < cap(c.msgs) {
				t.Fatalf("frame %q refused with room in the buffer", line)
			}
			for len(c.msgs) > 0 {
				if m := <-c.msgs; m.Recovered && m.Offset != 0 && m.Offset <= 5 {
					t.Fatalf("recovered message at offset %d, which the join (since 5) had", m.Offset)
				}
			}
			for len(c.events) > 0 {
				<-c.events
			}
		}
		for len(s.out) > 0 {
			<-s.out
		}
	})
}
