package presence

import (
	"context"
	"time"
)

// Per-user connection counts across the cluster, for a per-user connection
// limit that holds on every node: each node's share says how many
// connections each of its online users has and when the oldest opened.
// A user's first connection on a node is its connect delta (counted as
// one, opened when it was heard); a node sends a conns delta only when a
// user has two or more there, or goes back to one, so the common
// single-connection user costs no extra message.
//
// The counts are as fresh as the broker is fast: a node admitting a
// connection sees the others' connections of that user as of their last
// delta, milliseconds old on a working broker. Two nodes admitting the
// same user in the same instant may both admit, and the user then holds
// one connection over the limit until one of them closes.

type userConns struct {
	n      int
	oldest int64 // unix nanoseconds
}

// SetUserConns records that user has n connections on this node, the
// oldest opened at oldest, and tells the other nodes when it matters
// (n >= 2, or back to 1). n == 0 is Disconnect's business.
func (cp *Cluster) SetUserConns(ctx context.Context, user string, n int, oldest time.Time) error {
	if n <= 0 {
		return nil
	}
	cp.sendMu.Lock()
	defer cp.sendMu.Unlock()
	cp.mu.Lock()
	if _, online := cp.me.share.users[user]; !online {
		cp.mu.Unlock()
		return nil // Connect comes first
	}
	was := cp.me.share.conns[user]
	now := userConns{n: n, oldest: oldest.UnixNano()}
	if was == now {
		cp.mu.Unlock()
		return nil
	}
	cp.me.share.conns[user] = now
	if (n == 1 && was.n <= 1) || cp.closing.Load() {
		cp.mu.Unlock()
		return nil // the others' record of one connection stands
	}
	cp.seq++
	cp.me.seq = cp.seq
	m := presenceMsg{Type: msgConns, Seq: cp.seq, User: user, Conns: n, Oldest: now.oldest}
	cp.mu.Unlock()
	if err := cp.publish(ctx, &m); err != nil {
		cp.log.Debug("presence change not sent", "error", err, "type", msgConns)
	}
	return nil
}

// applyConns records another node's count for user. Called with mu held.
func (cp *Cluster) applyConns(p *peer, user string, n int, oldest int64) {
	if _, online := p.share.users[user]; !online || n <= 0 {
		return
	}
	p.share.conns[user] = userConns{n: n, oldest: oldest}
}

// UserConnsElsewhere returns how many connections user has on the other
// live nodes, and which node holds the oldest of them and since when
// (node "" when there are none).
func (cp *Cluster) UserConnsElsewhere(user string) (n int, node string, oldest time.Time) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var at int64
	for _, p := range cp.peers {
		if p == cp.me {
			continue
		}
		c, ok := p.share.conns[user]
		if !ok {
			continue
		}
		n += c.n
		if node == "" || c.oldest < at || c.oldest == at && p.id < node {
			node, at = p.id, c.oldest
		}
	}
	if node != "" {
		oldest = time.Unix(0, at)
	}
	return n, node, oldest
}

// EvictOldest asks node to close user's oldest connection there, provided
// it opened by openedBy (what UserConnsElsewhere said): if that connection
// is gone meanwhile, a younger one is not closed in its place.
func (cp *Cluster) EvictOldest(ctx context.Context, node, user string, openedBy time.Time) error {
	return cp.publish(ctx, &presenceMsg{Type: msgEvict, To: []string{node}, User: user, Oldest: openedBy.UnixNano()})
}
