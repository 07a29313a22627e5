package switchboard

import (
	"math"
	"time"
)

// Limits.MaxConnsPerUser across a cluster: with the default cluster
// presence every node's share says how many connections each of its users
// has (presence/userconns.go), so a node admitting a connection counts the
// user's connections everywhere. With PolicyEvictOldest the oldest
// connection is closed wherever it is. With a custom Presence, or on one
// node, the limit counts this node's connections only.

// userLimitHere is the limit to apply to user's connections on this node
// (MaxConnsPerUser less those elsewhere) and, with evict-oldest, the node
// that holds the user's oldest connection when that one is to go instead
// of one here (then the limit here is lifted), with when it opened.
func (h *Hub) userLimitHere(user string, evict bool) (limit int, remote string, openedBy time.Time) {
	limit = h.opts.Limits.MaxConnsPerUser
	if h.cluster == nil {
		return limit, "", time.Time{}
	}
	n, node, oldest := h.cluster.UserConnsElsewhere(user)
	if n == 0 {
		return limit, "", time.Time{}
	}
	here := max(limit-n, 0)
	if !evict {
		return here, "", time.Time{}
	}
	local, localOldest := h.reg.userConnStats(user)
	if local+n < limit {
		return limit, "", time.Time{} // room left
	}
	if local == 0 || oldest.Before(localOldest) {
		return math.MaxInt, node, oldest
	}
	return here, "", time.Time{}
}

// reportUserConns tells the cluster presence how many connections user
// has here now. Called with the user's stripe held (lockUser), after
// Connect and before Disconnect, so the deltas keep their order.
func (h *Hub) reportUserConns(user string) {
	if h.cluster == nil {
		return
	}
	n, oldest := h.reg.userConnStats(user)
	if err := h.cluster.SetUserConns(h.ctx, user, n, oldest); err != nil {
		h.log.Warn("presence connection count not sent", "error", err, "user_id", user)
	}
}

// evictRequested closes user's oldest connection here, when it opened by
// openedBy: another node admitted a connection of the user in its place.
func (h *Hub) evictRequested(user string, openedBy time.Time) {
	if c := h.reg.oldestUserConn(user, openedBy); c != nil {
		h.closeConn(c, CloseReplaced, "replaced")
	}
}
