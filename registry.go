package switchboard

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// The registry indexes live connections three ways: by connection id, by
// user and by room. Each index is split into shards by a hash of its key so
// that joins, leaves and cleanups on unrelated keys do not contend.
//
// Lock order (see docs/design.md): a goroutine holds at most one shard lock
// of any index at a time, and may take a Conn's mu while holding a shard
// lock (delivery walks a room and enqueues), never the other way round.
const shardCount = 64

func hashKey(key string) uint32 {
	// FNV-1a inline: no allocation, good enough spread for map sharding.
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return h
}

type connShard struct {
	mu    sync.RWMutex
	conns map[string]*Conn
}

type userShard struct {
	mu    sync.RWMutex
	users map[string][]*Conn // oldest first; at most MaxConnsPerUser long
}

// room is one room's local membership. users counts connections per user so
// that join and leave are announced per user, not per connection.
type room struct {
	members map[*Conn]bool // -> echo: deliver the connection's own publishes back
	users   map[string]int
}

type roomShard struct {
	mu    sync.RWMutex
	rooms map[string]*room
}

type registry struct {
	n     uint32 // shards per index; shardCount except in benchmarks
	conns []connShard
	users []userShard
	rooms []roomShard
	// nconns mirrors the total size of the conns maps, so that counting
	// connections (done on every connect for the log line) takes no locks.
	nconns atomic.Int64
}

func newRegistry(shards int) *registry {
	r := &registry{n: uint32(shards), conns: make([]connShard, shards),
		users: make([]userShard, shards), rooms: make([]roomShard, shards)}
	for i := range r.conns {
		r.conns[i].conns = make(map[string]*Conn)
		r.users[i].users = make(map[string][]*Conn)
		r.rooms[i].rooms = make(map[string]*room)
	}
	return r
}

func (r *registry) shardOf(key string) uint32 { return hashKey(key) % r.n }

// addUserConn registers c under its user unless the user is at max. With
// evict, the user's oldest connection not already being evicted is
// returned for the caller to close once c is set up; it stays listed (and
// counted) until its own cleanup. first reports that the user had no
// connection here before.
func (r *registry) addUserConn(c *Conn, max int, evict bool) (evicted *Conn, first, ok bool) {
	s := &r.users[r.shardOf(c.user)]
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.users[c.user]
	first = len(list) == 0
	live := 0
	for _, x := range list {
		if !x.evicting.Load() {
			live++
		}
	}
	if live >= max {
		if !evict {
			return nil, false, false
		}
		for _, x := range list {
			if x.evicting.CompareAndSwap(false, true) {
				evicted = x
				break
			}
		}
	}
	s.users[c.user] = append(list, c)
	return evicted, first, true
}

// removeUserConn drops c from its user's list and reports whether it was the
// user's last connection on this node.
func (r *registry) removeUserConn(c *Conn) (last bool) {
	s := &r.users[r.shardOf(c.user)]
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.users[c.user]
	for i, x := range list {
		if x == c {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(s.users, c.user)
		return true
	}
	s.users[c.user] = list
	return false
}

// userConnStats counts user's connections not being evicted, and says
// when the oldest of them opened.
func (r *registry) userConnStats(user string) (n int, oldest time.Time) {
	s := &r.users[r.shardOf(user)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, x := range s.users[user] {
		if x.evicting.Load() {
			continue
		}
		if n == 0 || x.connectedAt.Before(oldest) {
			oldest = x.connectedAt
		}
		n++
	}
	return n, oldest
}

// oldestUserConn marks user's oldest connection not yet being evicted for
// eviction and returns it, if it opened by openedBy.
func (r *registry) oldestUserConn(user string, openedBy time.Time) *Conn {
	s := &r.users[r.shardOf(user)]
	s.mu.Lock()
	defer s.mu.Unlock()
	var pick *Conn
	for _, x := range s.users[user] {
		if !x.evicting.Load() && (pick == nil || x.connectedAt.Before(pick.connectedAt)) {
			pick = x
		}
	}
	if pick == nil || pick.connectedAt.After(openedBy) || !pick.evicting.CompareAndSwap(false, true) {
		return nil
	}
	return pick
}

func (r *registry) userConns(user string) []*Conn {
	s := &r.users[r.shardOf(user)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]*Conn(nil), s.users[user]...)
}

func (r *registry) addConn(c *Conn) {
	s := &r.conns[r.shardOf(c.id)]
	s.mu.Lock()
	if _, dup := s.conns[c.id]; !dup {
		r.nconns.Add(1)
	}
	s.conns[c.id] = c
	s.mu.Unlock()
}

func (r *registry) removeConn(c *Conn) {
	s := &r.conns[r.shardOf(c.id)]
	s.mu.Lock()
	if _, ok := s.conns[c.id]; ok {
		delete(s.conns, c.id)
		r.nconns.Add(-1)
	}
	s.mu.Unlock()
}

// connCount is the number of registered connections.
func (r *registry) connCount() int { return int(r.nconns.Load()) }

// eachConn calls fn for every connection, one shard at a time. fn runs under
// the shard's read lock and must not block.
func (r *registry) eachConn(fn func(*Conn)) {
	for i := range r.conns {
		s := &r.conns[i]
		s.mu.RLock()
		for _, c := range s.conns {
			fn(c)
		}
		s.mu.RUnlock()
	}
}

// joinRoom adds c to name and reports whether c's user is new in the room
// and how many connections the room has here now.
// It refuses a closed connection so that a join racing with cleanup cannot
// leave a dead member behind (cleanup marks the connection closed first).
func (r *registry) joinRoom(c *Conn, name string, echo bool) (firstOfUser bool, size int, ok bool) {
	s := &r.rooms[r.shardOf(name)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.isClosed() {
		return false, 0, false
	}
	rm := s.rooms[name]
	if rm == nil {
		rm = &room{members: make(map[*Conn]bool), users: make(map[string]int)}
		s.rooms[name] = rm
	}
	if _, dup := rm.members[c]; dup {
		rm.members[c] = echo
		return false, len(rm.members), true
	}
	rm.members[c] = echo
	rm.users[c.user]++
	return rm.users[c.user] == 1, len(rm.members), true
}

// leaveRoom removes c from name. It reports whether c was a member,
// whether it was its user's last connection there, and how many
// connections the room had here before.
func (r *registry) leaveRoom(c *Conn, name string) (removed, lastOfUser bool, size int) {
	s := &r.rooms[r.shardOf(name)]
	s.mu.Lock()
	defer s.mu.Unlock()
	rm := s.rooms[name]
	if rm == nil {
		return false, false, 0
	}
	if _, in := rm.members[c]; !in {
		return false, false, 0
	}
	size = len(rm.members)
	delete(rm.members, c)
	rm.users[c.user]--
	if rm.users[c.user] > 0 {
		return true, false, size
	}
	delete(rm.users, c.user)
	if len(rm.members) == 0 {
		delete(s.rooms, name)
	}
	return true, true, size
}

// eachMember calls fn for every local member of the room under the shard's
// read lock; fn must only enqueue.
func (r *registry) eachMember(name string, fn func(c *Conn, echo bool)) {
	s := &r.rooms[r.shardOf(name)]
	s.mu.RLock()
	if rm := s.rooms[name]; rm != nil {
		for c, echo := range rm.members {
			fn(c, echo)
		}
	}
	s.mu.RUnlock()
}

// roomUsers returns the sorted users present in the room on this node.
func (r *registry) roomUsers(name string) []string {
	s := &r.rooms[r.shardOf(name)]
	s.mu.RLock()
	rm := s.rooms[name]
	var users []string
	if rm != nil {
		users = make([]string, 0, len(rm.users))
		for u := range rm.users {
			users = append(users, u)
		}
	}
	s.mu.RUnlock()
	sort.Strings(users)
	if users == nil {
		users = []string{}
	}
	return users
}

// roomSize returns how many users are in the room on this node.
func (r *registry) roomSize(name string) int {
	s := &r.rooms[r.shardOf(name)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	if rm := s.rooms[name]; rm != nil {
		return len(rm.users)
	}
	return 0
}

// onlineUsers returns the sorted users with a connection on this node.
func (r *registry) onlineUsers() []string {
	users := []string{}
	for i := range r.users {
		s := &r.users[i]
		s.mu.RLock()
		for u := range s.users {
			users = append(users, u)
		}
		s.mu.RUnlock()
	}
	sort.Strings(users)
	return users
}

// counts returns connections, users and rooms on this node.
func (r *registry) counts() (conns, users, rooms int) {
	for i := range r.conns {
		r.conns[i].mu.RLock()
		conns += len(r.conns[i].conns)
		r.conns[i].mu.RUnlock()
		r.users[i].mu.RLock()
		users += len(r.users[i].users)
		r.users[i].mu.RUnlock()
		r.rooms[i].mu.RLock()
		rooms += len(r.rooms[i].rooms)
		r.rooms[i].mu.RUnlock()
	}
	return
}
