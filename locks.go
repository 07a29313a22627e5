package switchboard

import "sync"

// stripedLocks serialise the presence transitions of one room (or one
// user): the registry change, the Presence call and the announcement happen
// in the same order for every connection, so a leave racing a join can
// never reach members (or a cluster's presence) as join-then-leave while
// the user stays. Striping bounds the memory; unrelated keys rarely share
// a stripe, and these sections are short.
//
// Lock order: a stripe lock is taken before any registry shard lock and
// before Conn.mu, and at most one stripe is held at a time.
type stripedLocks [shardCount]sync.Mutex

func (s *stripedLocks) lock(key string) func() {
	m := &s[hashKey(key)%shardCount]
	m.Lock()
	return m.Unlock
}

func (h *Hub) lockRoom(room string) func() { return h.roomLocks.lock(room) }
func (h *Hub) lockUser(user string) func() { return h.userLocks.lock(user) }
