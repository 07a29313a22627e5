package presence

import (
	"context"
	"sort"
	"time"
)

// presenceMsg is what nodes tell each other on the presence channel, as
// JSON: rare enough (a user's first or last connection somewhere) that
// readability on the wire wins over a binary form.
type presenceMsg struct {
	Type    string `json:"t"`
	Node    string `json:"n"`
	Started int64  `json:"st"`
	Seq     uint64 `json:"q"`
	Room    string `json:"r,omitempty"`
	User    string `json:"u,omitempty"`
	// To names the nodes asked for a snapshot; empty asks all.
	To []string `json:"to,omitempty"`
	// Snapshot parts, numbered from 0; Last closes the snapshot.
	Part  int                 `json:"p,omitempty"`
	Last  bool                `json:"z,omitempty"`
	Users []string            `json:"us,omitempty"`
	Rooms map[string][]string `json:"rs,omitempty"`
	// Heartbeat counts, for cluster stats; in a conns delta, the user's
	// connections on the node.
	Conns int `json:"cn,omitempty"`
	// Oldest is when the user's oldest connection on the node opened, in
	// unix nanoseconds (conns delta).
	Oldest int64 `json:"o,omitempty"`
	// UserConns (snapshot) are {connections, oldest} per user with more
	// than one connection.
	UserConns map[string][2]int64 `json:"uc,omitempty"`
	UserCount int                 `json:"un,omitempty"`
	RoomCount int                 `json:"rn,omitempty"`
}

// Presence message types. Join, leave, connect and disconnect are numbered
// deltas of the sender's share.
const (
	msgJoin       = "j"
	msgLeave      = "l"
	msgConnect    = "c"
	msgDisconnect = "d"
	msgHeartbeat  = "h"
	msgSnapshot   = "s"
	msgSync       = "y" // please send a snapshot
	msgBye        = "b" // the sender is shutting down
	msgConns      = "n" // a user's connection count on the sender (numbered)
	msgEvict      = "e" // please close the user's oldest connection (To)
)

// RoomUsers returns the sorted users in room, cluster-wide.
func (cp *Cluster) RoomUsers(_ context.Context, room string) ([]string, error) {
	cp.mu.Lock()
	seen := make(map[string]struct{}, cp.rooms[room])
	for _, p := range cp.peers {
		for u := range p.share.rooms[room] {
			seen[u] = struct{}{}
		}
	}
	cp.mu.Unlock()
	return sortedKeys(seen), nil
}

// RoomSize returns how many users are in room, cluster-wide.
func (cp *Cluster) RoomSize(_ context.Context, room string) (int, error) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.rooms[room], nil
}

// OnlineUsers returns the sorted users with a connection on any node.
func (cp *Cluster) OnlineUsers(context.Context) ([]string, error) {
	cp.mu.Lock()
	seen := make(map[string]struct{}, len(cp.me.share.users))
	for _, p := range cp.peers {
		for u := range p.share.users {
			seen[u] = struct{}{}
		}
	}
	cp.mu.Unlock()
	return sortedKeys(seen), nil
}

// NodeInfo describes one node of the cluster as this node knows it.
type NodeInfo struct {
	ID          string    `json:"id"`
	Connections int       `json:"connections"`
	Users       int       `json:"users"`
	Rooms       int       `json:"rooms"`
	LastSeen    time.Time `json:"last_seen"`
}

// Peers lists the other live nodes, by id, with the counts of their last
// heartbeat (every TTL/3).
func (cp *Cluster) Peers() []NodeInfo {
	cp.mu.Lock()
	others := make([]NodeInfo, 0, len(cp.peers))
	for _, p := range cp.peers {
		if p != cp.me {
			others = append(others, NodeInfo{ID: p.id, Connections: p.conns, Users: p.users, Rooms: p.roomCount, LastSeen: p.heard})
		}
	}
	cp.mu.Unlock()
	sort.Slice(others, func(i, j int) bool { return others[i].ID < others[j].ID })
	return others
}

// Totals returns the cluster's distinct online users and its rooms.
func (cp *Cluster) Totals() (users, rooms int) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	online := make(map[string]struct{}, len(cp.me.share.users))
	for _, p := range cp.peers {
		for u := range p.share.users {
			online[u] = struct{}{}
		}
	}
	return len(online), len(cp.rooms)
}
