package server

import (
	"context"
	"net/http"
	"slices"
	"time"
)

// errUnavailableAdmin answers a dashboard request this node cannot take now.
const errUnavailableAdmin = "unavailable"

type adminConn struct {
	ID          string    `json:"id"`
	ConnectedAt time.Time `json:"connected_at"`
	LastSeen    time.Time `json:"last_seen"`
	RemoteAddr  string    `json:"remote_addr"`
	UserAgent   string    `json:"user_agent"`
	Rooms       []string  `json:"rooms"`
}

type adminUser struct {
	User string `json:"user"`
	// Online is true when the user has a connection on any node.
	Online bool `json:"online"`
	// Connections counts the user's connections on every node (as fresh
	// as the broker carries other nodes' counts).
	Connections int `json:"connections"`
	// Node is the node answering; Here are the user's connections on it.
	Node string      `json:"node"`
	Here []adminConn `json:"here"`
}

// lookupUser serves GET /admin/api/user?id=<user>.
func (a *admin) lookupUser(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("id")
	if rerr := validUser("id", user); rerr != nil {
		writeError(w, rerr.status, rerr.code, rerr.text)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	online, err := a.hub.OnlineUsers(ctx)
	if err != nil {
		a.log.Error("admin user look-up failed", "error", err)
		writeError(w, http.StatusInternalServerError, errInternal, "presence is unavailable")
		return
	}
	_, found := slices.BinarySearch(online, user)
	u := adminUser{User: user, Online: found, Connections: a.hub.UserConnCount(user), Node: a.hub.NodeID(), Here: []adminConn{}}
	for _, c := range a.hub.UserConns(user) {
		rooms := c.Rooms()
		if rooms == nil {
			rooms = []string{}
		}
		u.Here = append(u.Here, adminConn{ID: c.ID(), ConnectedAt: c.ConnectedAt().UTC(), LastSeen: c.LastSeen().UTC(),
			RemoteAddr: c.RemoteAddr(), UserAgent: c.UserAgent(), Rooms: rooms})
	}
	writeJSON(w, http.StatusOK, u)
}

// disconnect serves POST /admin/api/disconnect {"user": id}: the user's
// connections on every node are closed with 4003, as by POST
// /api/disconnect. A JSON body is required, which a cross-site form
// cannot send without the browser asking first.
func (a *admin) disconnect(w http.ResponseWriter, r *http.Request) {
	if user, ok := disconnectUser(w, r, a.hub, a.log, "admin"); ok {
		a.log.Info("admin disconnected a user", "user", user)
	}
}
