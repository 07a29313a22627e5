package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard"
)

// The dashboard's numbers. Every node with --admin samples its own hub
// once a second and hands the sample to every node (Hub.SendToNodes), so
// that whichever node a load balancer sends the dashboard to shows them
// all. Rates are computed by the node that counted, over its own interval.
const (
	adminInterval = time.Second
	// A node whose samples stopped (gone, or its --admin off) leaves the
	// dashboard after this.
	adminPeerExpiry = 5 * time.Second
	// adminTopRooms is how many rooms each node names and the dashboard shows.
	adminTopRooms = 10
	// adminMaxPeers bounds the nodes remembered (samples are broker input).
	adminMaxPeers = 256
	sampleVersion = 1
)

// nodeSample is one node's second, as it travels between nodes.
type nodeSample struct {
	V    int    `json:"v"`
	Node string `json:"node"`
	TS   int64  `json:"ts"` // unix milliseconds at the sample
	// Connections, users and rooms on the node now.
	Connections int `json:"connections"`
	Users       int `json:"users"`
	Rooms       int `json:"rooms"`
	// Per second over the last interval: client messages in (publish and
	// send frames), frames out (queued to connections), frames dropped by
	// reason, connections cut off as slow consumers (close 4001).
	In      float64            `json:"in"`
	Out     float64            `json:"out"`
	Drops   map[string]float64 `json:"drops"`
	Cutoffs float64            `json:"cutoffs"`
	// Totals since the node started, for the same four.
	Totals sampleTotals `json:"totals"`
	// Top are the node's rooms with the most users on it.
	Top []switchboard.RoomCount `json:"top"`
}

type sampleTotals struct {
	In      uint64            `json:"in"`
	Out     uint64            `json:"out"`
	Drops   map[string]uint64 `json:"drops"`
	Cutoffs uint64            `json:"cutoffs"`
}

// adminSnapshot is what the dashboard receives every second.
type adminSnapshot struct {
	TS      int64                   `json:"ts"`
	Node    string                  `json:"node"` // the node serving this dashboard
	Cluster clusterSample           `json:"cluster"`
	Nodes   []nodeSample            `json:"nodes"` // this node first, then by id
	Top     []switchboard.RoomCount `json:"top"`   // users cluster-wide
}

// clusterSample sums the nodes' rates; users and rooms are distinct
// cluster-wide (from presence), connections the nodes' sum.
type clusterSample struct {
	Connections int                `json:"connections"`
	Users       int                `json:"users"`
	Rooms       int                `json:"rooms"`
	In          float64            `json:"in"`
	Out         float64            `json:"out"`
	Drops       map[string]float64 `json:"drops"`
	Cutoffs     float64            `json:"cutoffs"`
	Totals      sampleTotals       `json:"totals"`
}

type peerSample struct {
	s     nodeSample
	heard time.Time
}

// adminStats samples this node and keeps the other nodes' last samples.
type adminStats struct {
	node  string
	share bool
	log   *slog.Logger
	hub   *switchboard.Hub

	// Owned by run.
	prev     switchboard.Counters
	prevTime time.Time

	mu    sync.Mutex
	self  nodeSample
	peers map[string]peerSample
	last  []byte // the latest snapshot, encoded
}

func newAdminStats(node string, share bool, log *slog.Logger) *adminStats {
	return &adminStats{node: node, share: share, log: log, peers: map[string]peerSample{},
		last: []byte(`{"nodes":[]}`)}
}

// run samples every adminInterval until ctx ends, handing each snapshot
// to publish.
func (st *adminStats) run(ctx context.Context, publish func([]byte)) {
	st.prev, st.prevTime = st.hub.Counters(), time.Now()
	publish(st.tick(time.Now(), true))
	t := time.NewTicker(adminInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			publish(st.tick(now, false))
		}
	}
}

// tick takes this node's sample, shares it, and builds the snapshot.
func (st *adminStats) tick(now time.Time, first bool) []byte {
	s := st.sample(now, first)
	if st.share {
		b, _ := json.Marshal(s)
		ctx, cancel := context.WithTimeout(context.Background(), adminInterval)
		if err := st.hub.SendToNodes(ctx, b); err != nil && !errors.Is(err, switchboard.ErrClosed) {
			st.log.Debug("admin sample not shared", "error", err)
		}
		cancel()
	}
	st.mu.Lock()
	st.self = s
	st.mu.Unlock()
	snap := st.snapshot(now)
	b, err := json.Marshal(snap)
	if err != nil {
		st.log.Error("admin snapshot not encoded", "error", err)
		return st.latest()
	}
	st.mu.Lock()
	st.last = b
	st.mu.Unlock()
	return b
}

// sample reads the hub's counters and turns their growth into rates.
func (st *adminStats) sample(now time.Time, first bool) nodeSample {
	c := st.hub.Counters()
	hs := st.hub.Stats()
	dt := now.Sub(st.prevTime).Seconds()
	rate := func(cur, prev uint64) float64 {
		if first || dt <= 0 || cur < prev {
			return 0
		}
		return float64(cur-prev) / dt
	}
	in := func(k switchboard.Counters) uint64 { return k.MessagesIn["publish"] + k.MessagesIn["send"] }
	s := nodeSample{
		V: sampleVersion, Node: st.node, TS: now.UnixMilli(),
		Connections: hs.Connections, Users: hs.Users, Rooms: hs.Rooms,
		In: rate(in(c), in(st.prev)), Out: rate(c.Deliveries, st.prev.Deliveries),
		Cutoffs: rate(c.Closes[switchboard.CloseSlowConsumer], st.prev.Closes[switchboard.CloseSlowConsumer]),
		Drops:   map[string]float64{},
		Totals: sampleTotals{In: in(c), Out: c.Deliveries, Cutoffs: c.Closes[switchboard.CloseSlowConsumer],
			Drops: map[string]uint64{}},
		Top: st.hub.TopRooms(adminTopRooms),
	}
	for _, r := range switchboard.DropReasons() {
		s.Drops[r] = rate(c.Drops[r], st.prev.Drops[r])
		s.Totals.Drops[r] = c.Drops[r]
	}
	if s.Top == nil {
		s.Top = []switchboard.RoomCount{}
	}
	st.prev, st.prevTime = c, now
	return s
}

// receive takes another node's sample (Options.OnNodeMessage, on the
// broker's goroutine): decoded, checked, kept. This node's own comes
// straight from tick.
func (st *adminStats) receive(node string, payload []byte) {
	if node == st.node {
		return
	}
	s, err := decodeNodeSample(node, payload)
	if err != nil {
		st.log.Debug("admin sample from another node dropped", "error", err, "bytes", len(payload))
		return
	}
	now := time.Now()
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, known := st.peers[node]; !known && len(st.peers) >= adminMaxPeers {
		st.expire(now)
		if len(st.peers) >= adminMaxPeers {
			return
		}
	}
	st.peers[node] = peerSample{s: s, heard: now}
}

// decodeNodeSample parses and checks a sample from the broker: its
// version, its sender, sane counts and bounded sizes.
func decodeNodeSample(node string, payload []byte) (nodeSample, error) {
	var s nodeSample
	if err := json.Unmarshal(payload, &s); err != nil {
		return s, fmt.Errorf("decode sample: %w", err)
	}
	switch {
	case s.V != sampleVersion:
		return s, fmt.Errorf("sample version %d, want %d", s.V, sampleVersion)
	case s.Node != node:
		return s, errors.New("sample names another node than its sender")
	case s.Connections < 0 || s.Users < 0 || s.Rooms < 0 || s.In < 0 || s.Out < 0 || s.Cutoffs < 0:
		return s, errors.New("negative count in sample")
	case len(s.Top) > adminTopRooms || len(s.Drops) > len(switchboard.DropReasons()) ||
		len(s.Totals.Drops) > len(switchboard.DropReasons()):
		return s, errors.New("sample too large")
	}
	known := map[string]bool{}
	for _, r := range switchboard.DropReasons() {
		known[r] = true
	}
	for r, v := range s.Drops {
		if !known[r] || v < 0 {
			return s, fmt.Errorf("unknown drop reason or negative rate in sample")
		}
	}
	for r := range s.Totals.Drops {
		if !known[r] {
			return s, fmt.Errorf("unknown drop reason in sample totals")
		}
	}
	for _, rc := range s.Top {
		if rc.Room == "" || len(rc.Room) > 256 || rc.Users < 0 {
			return s, errors.New("bad room in sample")
		}
	}
	return s, nil
}

// expire forgets nodes not heard from for adminPeerExpiry (st.mu held).
func (st *adminStats) expire(now time.Time) {
	for id, p := range st.peers {
		if now.Sub(p.heard) > adminPeerExpiry {
			delete(st.peers, id)
		}
	}
}

// snapshot combines this node's sample with the live peers'.
func (st *adminStats) snapshot(now time.Time) adminSnapshot {
	st.mu.Lock()
	st.expire(now)
	nodes := []nodeSample{st.self}
	for _, p := range st.peers {
		nodes = append(nodes, p.s)
	}
	st.mu.Unlock()
	sort.Slice(nodes[1:], func(i, j int) bool { return nodes[1+i].Node < nodes[1+j].Node })

	cs, _ := st.hub.ClusterStats()
	c := clusterSample{Users: cs.Users, Rooms: cs.Rooms, Drops: map[string]float64{},
		Totals: sampleTotals{Drops: map[string]uint64{}}}
	candidates := map[string]bool{}
	for _, n := range nodes {
		c.Connections += n.Connections
		c.In += n.In
		c.Out += n.Out
		c.Cutoffs += n.Cutoffs
		c.Totals.In += n.Totals.In
		c.Totals.Out += n.Totals.Out
		c.Totals.Cutoffs += n.Totals.Cutoffs
		for r, v := range n.Drops {
			c.Drops[r] += v
		}
		for r, v := range n.Totals.Drops {
			c.Totals.Drops[r] += v
		}
		for _, rc := range n.Top {
			candidates[rc.Room] = true
		}
	}
	return adminSnapshot{TS: now.UnixMilli(), Node: st.node, Cluster: c, Nodes: nodes, Top: st.topRooms(candidates)}
}

// topRooms ranks the rooms the nodes named by their users cluster-wide
// (a user in a room on two nodes counts once).
func (st *adminStats) topRooms(candidates map[string]bool) []switchboard.RoomCount {
	top := make([]switchboard.RoomCount, 0, len(candidates))
	ctx, cancel := context.WithTimeout(context.Background(), adminInterval)
	defer cancel()
	for room := range candidates {
		n, err := st.hub.RoomSize(ctx, room)
		if err != nil || n == 0 {
			continue
		}
		top = append(top, switchboard.RoomCount{Room: room, Users: n})
	}
	sort.Slice(top, func(i, j int) bool {
		return top[i].Users > top[j].Users || top[i].Users == top[j].Users && top[i].Room < top[j].Room
	})
	if len(top) > adminTopRooms {
		top = top[:adminTopRooms]
	}
	return top
}

// latest is the last snapshot, encoded.
func (st *adminStats) latest() []byte {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.last
}
