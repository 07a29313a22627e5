package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"
)

// The presence protocol between nodes: what a node does with another
// node's messages, and how it sends its heartbeats and snapshots (see
// Cluster for the whole picture and messages.go for the messages).

// Receive applies a message heard on the presence channel: another
// node's, or this node's own (its heartbeats prove the broker works).
// Malformed messages are logged and dropped.
func (cp *Cluster) Receive(b []byte) {
	var m presenceMsg
	if err := json.Unmarshal(b, &m); err != nil || m.Node == "" {
		cp.log.Warn("presence message dropped", "error", err, "bytes", len(b))
		return
	}
	now := time.Now()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if m.Node == cp.self && m.Started != cp.started {
		// Another live process has this node's name: neither can see the
		// other's users. Say so, once per TTL.
		if now.Sub(cp.twinWarned) > cp.ttl {
			cp.twinWarned = now
			cp.log.Error("another node uses this node id: presence is wrong on both; give every node its own --node-id",
				"node_id", cp.self)
		}
		return
	}
	if m.Node == cp.self {
		if m.Type == msgHeartbeat {
			if now.Sub(cp.selfHeard) > cp.ttl/2 {
				// Back from an outage (or just started): nobody could be
				// heard meanwhile, so everybody gets a full TTL to speak.
				for _, p := range cp.peers {
					p.heard = now
				}
			}
			cp.selfHeard = now
		}
		return
	}
	p := cp.peers[m.Node]
	if p == nil {
		if m.Type == msgBye {
			return
		}
		// A node heard for the first time is complete as long as its first
		// numbered message is number 1; anything else is a gap.
		p = &peer{id: m.Node, synced: true, share: newShare()}
		cp.peers[m.Node] = p
		cp.log.Info("cluster node joined", "node_id", m.Node)
	}
	switch {
	case m.Started < p.started:
		return // a late word from an earlier run of a restarted node
	case m.Started > p.started && p.started != 0:
		// The node restarted under the same name: none of its earlier
		// connections survived, so its earlier share is all gone.
		cp.log.Info("cluster node restarted", "node_id", p.id)
		stale := p.share
		p.share = newShare()
		p.seq, p.synced, p.incoming, p.asked = 0, true, nil, time.Time{}
		p.started = m.Started // before the leader is chosen: it is young now
		cp.dropShare(p, stale)
	}
	p.heard = now
	p.started = m.Started
	switch m.Type {
	case msgJoin, msgLeave, msgConnect, msgDisconnect:
		switch {
		case m.Seq <= p.seq: // already applied, or covered by a snapshot
		case p.synced && m.Seq == p.seq+1:
			p.seq = m.Seq
			cp.apply(p, m.Type, m.Room, m.User, false)
		default:
			cp.lost(p, now)
		}
	case msgConns:
		switch {
		case m.Seq <= p.seq:
		case p.synced && m.Seq == p.seq+1:
			p.seq = m.Seq
			cp.applyConns(p, m.User, m.Conns, m.Oldest)
		default:
			cp.lost(p, now)
		}
	case msgEvict:
		if slices.Contains(m.To, cp.self) {
			cp.evict(m.User, time.Unix(0, m.Oldest)) // the hub closes it on its own goroutine
		}
	case msgHeartbeat:
		p.conns, p.users, p.roomCount = m.Conns, m.UserCount, m.RoomCount
		if m.Seq > p.seq || !p.synced {
			cp.lost(p, now)
		}
	case msgSnapshot:
		cp.snapshotPart(p, &m, now)
	case msgSync:
		if len(m.To) == 0 || slices.Contains(m.To, cp.self) {
			cp.wantSnap = true
			cp.signal()
		}
	case msgBye:
		delete(cp.peers, p.id)
		cp.replace(p, newShare(), cp.isLeader())
		cp.log.Info("cluster node left", "node_id", p.id)
	}
}

// lost marks p's share incomplete and asks for a snapshot, at most once
// per heartbeat interval. Called with mu held.
func (cp *Cluster) lost(p *peer, now time.Time) {
	p.synced = false
	if now.Sub(p.asked) < cp.ttl/3 {
		return
	}
	p.asked = now
	if cp.wantSync == nil {
		cp.wantSync = map[string]bool{}
	}
	cp.wantSync[p.id] = true
	cp.signal()
}

func (cp *Cluster) snapshotPart(p *peer, m *presenceMsg, now time.Time) {
	if m.Part == 0 {
		in := newShare()
		p.incoming, p.nextPart = &in, 0
	}
	if p.incoming == nil || m.Part != p.nextPart {
		p.incoming = nil
		cp.lost(p, now)
		return
	}
	p.nextPart++
	for _, u := range m.Users {
		p.incoming.users[u] = struct{}{}
	}
	for u, c := range m.UserConns {
		p.incoming.conns[u] = userConns{n: int(c[0]), oldest: c[1]}
	}
	for room, users := range m.Rooms {
		members := p.incoming.rooms[room]
		if members == nil {
			members = map[string]struct{}{}
			p.incoming.rooms[room] = members
		}
		for _, u := range users {
			members[u] = struct{}{}
		}
	}
	if !m.Last {
		return
	}
	next := *p.incoming
	p.incoming = nil
	if p.synced && m.Seq < p.seq {
		return // older than what was applied since (cannot happen in order)
	}
	// What a snapshot changes was missed here; the leader reports it (the
	// node that made the change may have too: at least once).
	cp.replace(p, next, cp.isLeader())
	p.seq, p.synced = m.Seq, true
}

// heartbeat says this node is alive, with its newest number. It is read
// under sendMu, so every delta it counts was handed to the broker before
// it; the heartbeat itself goes out without sendMu, so that retrying it
// (a broker queue full of room traffic) never holds up this node's joins.
// Three lost heartbeats in a row would get this node dropped elsewhere.
func (cp *Cluster) heartbeat(ctx context.Context) {
	st := cp.counts()
	cp.sendMu.Lock()
	cp.mu.Lock()
	m := presenceMsg{Type: msgHeartbeat, Seq: cp.seq, Conns: st.Connections, UserCount: st.Users, RoomCount: st.Rooms}
	cp.mu.Unlock()
	cp.sendMu.Unlock()
	deadline := time.Now().Add(cp.ttl / 6)
	for {
		err := cp.publish(ctx, &m)
		if err == nil || ctx.Err() != nil {
			return
		}
		if time.Now().After(deadline) {
			cp.log.Warn("presence heartbeat failed", "error", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (cp *Cluster) askSnapshots(ctx context.Context, want map[string]bool) {
	m := presenceMsg{Type: msgSync}
	if !want[""] {
		for id := range want {
			m.To = append(m.To, id)
		}
		sort.Strings(m.To)
	}
	if err := cp.publish(ctx, &m); err != nil && ctx.Err() == nil {
		cp.log.Warn("presence snapshot request failed", "error", err)
	}
}

// sendSnapshot publishes this node's whole share in parts. sendMu keeps
// deltas out from between the parts.
func (cp *Cluster) sendSnapshot(ctx context.Context) {
	cp.sendMu.Lock()
	defer cp.sendMu.Unlock()
	cp.mu.Lock()
	parts := splitShare(cp.me.share, cp.seq)
	cp.mu.Unlock()
	for i := range parts {
		if err := cp.publish(ctx, &parts[i]); err != nil {
			if ctx.Err() == nil {
				cp.log.Warn("presence snapshot failed", "error", err)
			}
			return
		}
	}
}

// splitShare encodes s as snapshot messages of at most about
// snapshotPartBytes each, counting every name as if JSON escaped each of
// its bytes (six bytes).
func splitShare(s share, seq uint64) []presenceMsg {
	var parts []presenceMsg
	cur := presenceMsg{Type: msgSnapshot, Seq: seq}
	n := 0
	add := func(size int) {
		if n > 0 && n+size > snapshotPartBytes {
			parts = append(parts, cur)
			cur = presenceMsg{Type: msgSnapshot, Seq: seq, Part: len(parts)}
			n = 0
		}
		n += size
	}
	for u := range s.users {
		add(6*len(u) + 4)
		cur.Users = append(cur.Users, u)
		if c := s.conns[u]; c.n > 1 {
			add(6*len(u) + 48)
			if cur.UserConns == nil {
				cur.UserConns = map[string][2]int64{}
			}
			cur.UserConns[u] = [2]int64{int64(c.n), c.oldest}
		}
	}
	for room, members := range s.rooms {
		for u := range members {
			add(6*(len(u)+len(room)) + 8)
			if cur.Rooms == nil {
				cur.Rooms = map[string][]string{}
			}
			cur.Rooms[room] = append(cur.Rooms[room], u)
		}
	}
	cur.Last = true
	return append(parts, cur)
}

func (cp *Cluster) publish(ctx context.Context, m *presenceMsg) error {
	m.Node, m.Started = cp.self, cp.started
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode presence message: %w", err)
	}
	return cp.send(ctx, body)
}
