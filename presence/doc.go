// Package presence keeps who is online and who is in which room across
// the nodes of a cluster, and batches what big rooms are told of it.
//
// Cluster is a replica of every node's share kept in step over one broker
// channel: numbered deltas, heartbeats that reveal lost deltas, snapshots
// in parts that repair them, and expiry of silent nodes that holds only
// while this node hears itself (a broker outage is no verdict). It
// reports the cluster-wide transitions (a user's first connection
// anywhere, its last one gone; likewise per room) as Changes. Diffs
// collect the changes of big rooms between flushes so that filling a room
// of N costs O(N) frames, not O(N²); Notifier runs an application's
// callback in order, outside any lock.
//
// The root package switchboard defines the Presence interface (Cluster is
// its default with a multi-node broker) and carries the channel: it
// wraps what Send gives it for the broker and hands what arrives to
// Receive. This package must not import the root package, history, the
// transports, a broker or the server; of the project it uses only
// internal/protocol (to encode user lists), so that the replica can be
// used and tested without a hub.
package presence
