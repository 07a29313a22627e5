// Package history keeps and replays the recent messages of the streams
// that ask for it, so that a client coming back gets exactly what it
// missed, in order, or learns that it cannot.
//
// It holds the parts of recovery that do not depend on a hub:
//
//   - Page, the offsets and epochs of a stream, and the trailer that ends
//     every kept payload (Trailer, Split);
//   - Memory, the single-node store: a ring per stream bounded in count,
//     bytes and time;
//   - Cursor, one connection's position in one stream: live messages are
//     held while history is read, duplicates dropped and gaps filled;
//   - SharedReader, reads bounded in time, with identical gap fills of one
//     stream shared between connections, and CatchUp, the periodic check
//     that finds followers left behind in quiet streams.
//
// The root package switchboard defines the History interface that stores
// implement (Memory here; the Redis and NATS brokers) and wires cursors to
// connections. This package must not import the root package, presence,
// the transports, a broker or the server: it depends only on the standard
// library, so that stores and cursors can be used and tested alone.
package history
