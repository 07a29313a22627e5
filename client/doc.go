// Package client is a Go client for a Switchboard server: it speaks the
// wire protocol of docs/protocol.md over one WebSocket and keeps the
// application's view of its rooms intact across connection losses.
//
// # Requests
//
// Dial connects (with Options.Token as a bearer token, or a token from
// Options.TokenFunc) and waits for the welcome frame. Join, Leave,
// Publish, Send and Presence each send one request and wait, bounded by
// their context, for its ack; a refusal is an *Error with the protocol's
// error code. A request made while the client is reconnecting waits for
// the new connection, again bounded by its context. Message frames arrive
// on Messages, presence changes and rejoins on Events.
//
// # Liveness and reconnecting
//
// The client answers the server's pings, takes the server for dead when
// nothing arrived for ping_interval + pong_timeout plus a margin, and
// reconnects with exponential backoff and full jitter (Options.MinBackoff,
// Options.MaxBackoff), honouring a Retry-After from a busy or draining
// server. After a reconnect it joins its rooms again; in rooms that keep
// history it passes since and epoch, so that the messages missed meanwhile
// are delivered, in order and once, before the live ones. When they cannot
// be recovered, an EventRejoin with Recovered false tells the application
// to reload the room.
//
// It does not reconnect after the close codes 4002 replaced and 4003
// kicked, nor after the protocol faults 1002, 1003 and 1007 (see
// Client.Err). After 1008 (policy: too many rate-limited frames;
// token_expired) it reconnects with backoff, presenting a fresh token from
// Options.TokenFunc; an expired token without a TokenFunc ends the client.
//
// Close stops everything: the client's goroutines have exited when it
// returns.
package client
