// Package switchboard is a WebSocket connection manager: it knows who is
// online, on how many devices, in which rooms, and pushes messages to them.
//
// A Hub holds the registry (connections by id, by user and by room, each
// index sharded by key) and routes frames between clients and application
// code. Mount Hub.Handler on any net/http server; under nbio's event-driven
// engine (see ConfigureEngine) an idle connection costs no goroutine and
// about 3 KB.
//
//	hub, err := switchboard.New(switchboard.Options{Authenticate: myAuth})
//	...
//	http.Handle("/ws", hub.Handler())
//	hub.Publish(ctx, "news", json.RawMessage(`{"headline":"..."}`))
//
// The life cycle of a connection: authentication happens before the
// upgrade (a refused client never costs a WebSocket); the connection is
// registered and greeted with a welcome frame; every frame from the peer
// refreshes its liveness; one sweeper pings every connection and closes
// those silent for longer than PingInterval+PongTimeout (4000); a peer that
// does not read what is sent to it is closed once its queue passes
// Limits.QueueBytes (4001) without ever blocking the sender; on any exit,
// including a panic in a callback, the connection leaves every index and
// its user's leave is announced where it was the user's last connection.
//
// The wire protocol is documented in docs/protocol.md. Delivery between
// nodes goes through a Broker; who is online comes from Presence. Both
// default to single-node, in-memory implementations.
//
// The root package is the public API and the core: registry, connection,
// routing, life cycle and the sweeper. The cluster replica lives in package
// presence, history stores and cursors in package history, and the socket
// transports in internal/transport; the root package wires them and they
// never import it. It must not import a broker, a metrics library, the
// server or any other third-party module but nbio's HTTP engine (for
// ConfigureEngine) and golang.org/x/time (internal/layers checks; see
// docs/design.md).
package switchboard
