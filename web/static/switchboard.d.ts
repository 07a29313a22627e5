// Types of switchboard.js, the Switchboard JavaScript client. They describe
// the wire protocol of docs/protocol.md as the client exposes it; the
// runtime behaviour (reconnects, rejoins, history resume) is documented in
// the header of switchboard.js. They need no DOM library, so they work in
// Node projects as well as in browser ones.

// ---- errors ----

/** Error codes the server sends (docs/protocol.md, section 8). */
export type ServerErrorCode =
  | 'bad_request'
  | 'forbidden'
  | 'not_joined'
  | 'rate_limited'
  | 'too_many_rooms'
  | 'too_large'
  | 'internal';

/** Error codes the client produces itself:
 *  - `timeout`: no answer within `requestTimeout` (the request may still have
 *    been executed);
 *  - `disconnected`: the connection ended before the answer came (the client
 *    reconnects; send again if the request must happen);
 *  - `closed`: the client is closed (close(), a close code it does not
 *    reconnect after, or a request before connect() with `autoConnect: false`). */
export type ClientErrorCode = 'timeout' | 'disconnected' | 'closed';

export type SwitchboardErrorCode = ServerErrorCode | ClientErrorCode;

/** The reason every request Promise rejects with. */
export class SwitchboardError extends Error {
  constructor(code: SwitchboardErrorCode, message?: string);
  readonly name: 'SwitchboardError';
  /** The server's error code, or one of the client's own. */
  readonly code: SwitchboardErrorCode;
}

// ---- frames from the server ----

/** First frame of every connection. */
export interface WelcomeFrame {
  type: 'welcome';
  /** This connection's id (opaque). */
  conn: string;
  /** The authenticated user id. */
  user: string;
  /** Seconds between server pings; may be a decimal such as 0.5. */
  ping_interval: number;
  /** Extra seconds the server waits for a sign of life after a ping interval. */
  pong_timeout: number;
  /** The largest frame the client may send, in bytes. */
  max_message_bytes: number;
  /** Present on an event stream (/sse) only: `'sse'`. */
  transport?: 'sse';
  /** Present on an event stream only: the session its POSTs carry (in the
   *  `Switchboard-Session` header); the client handles it. */
  session?: string;
}

interface MessageFrameBase {
  type: 'message';
  /** The sender's user id, or "server" when the application sent it. */
  from: string;
  /** The JSON value the sender supplied, as JSON.parse reads it. */
  data: unknown;
  /** Unique message id (opaque; the same for every recipient). */
  id: string;
  /** Server time of the publish, Unix milliseconds. */
  ts: number;
  /** Position in the room's (or the user's direct messages') history, only
   *  where the server keeps history. */
  offset?: number;
}

/** A publish to a room this connection is in. */
export interface RoomMessageFrame extends MessageFrameBase {
  room: string;
  to?: never;
  broadcast?: never;
}

/** A direct message to this connection's user. */
export interface DirectMessageFrame extends MessageFrameBase {
  /** The recipient user id. */
  to: string;
  room?: never;
  broadcast?: never;
}

/** A message from the application to every connection. */
export interface BroadcastMessageFrame extends MessageFrameBase {
  broadcast: true;
  room?: never;
  to?: never;
}

/** A message carries exactly one of `room`, `to` or `broadcast`; test
 *  `typeof m.room === 'string'` (or `to`, `broadcast`) to tell them apart. */
export type MessageFrame = RoomMessageFrame | DirectMessageFrame | BroadcastMessageFrame;

/** A user's first connection entered a room this connection is in. */
export interface JoinFrame {
  type: 'join';
  room: string;
  user: string;
}

/** A user's last connection left a room this connection is in. */
export interface LeaveFrame {
  type: 'leave';
  room: string;
  user: string;
}

/** Batched joins and leaves of a big room; both lists sorted, maybe empty. */
export interface PresenceDiffFrame {
  type: 'presence_diff';
  room: string;
  joins: string[];
  leaves: string[];
}

/** Answer to a presence request: the room's users, sorted, each once. */
export interface PresenceFrame {
  type: 'presence';
  room: string;
  users: string[];
}

/** A request succeeded. leave(), publish() and send() resolve with it. */
export interface AckFrame {
  type: 'ack';
  /** The request's id. */
  ref: string;
}

/** The ack of a join (join() resolves with its users, already sorted). */
export interface JoinAckFrame extends AckFrame {
  /** The room's users, sorted, the joining one included. */
  users: string[];
  /** Rooms with history: the offset of the newest kept message (0 before the first). */
  offset?: number;
  /** Rooms with history: names the history; offsets continue only within one epoch. */
  epoch?: string;
  /** Joins with `since`: whether `messages` fills the gap. */
  recovered?: boolean;
  /** Joins with `since`: the messages after it, oldest first (empty unless recovered). */
  messages?: MessageFrame[];
}

/** A request failed, or (without `ref`) a frame could not be handled. */
export interface ErrorFrame {
  type: 'error';
  /** The failed request's id, when it had a usable one. */
  ref?: string;
  code: ServerErrorCode;
  /** For humans; may change. */
  message: string;
}

export interface PingFrame {
  type: 'ping';
}

export interface PongFrame {
  type: 'pong';
}

/** Every frame the server sends (the client handles them all itself). */
export type ServerFrame =
  | WelcomeFrame
  | PingFrame
  | PongFrame
  | MessageFrame
  | JoinFrame
  | LeaveFrame
  | PresenceDiffFrame
  | PresenceFrame
  | AckFrame
  | JoinAckFrame
  | ErrorFrame;

// ---- the client ----

/** What `publish` and `send` accept: any value JSON.stringify turns into a
 *  JSON value (`undefined` would drop the required `data` field). */
export type MessageData = string | number | boolean | null | object;

/** What the client needs of a WebSocket implementation: the WHATWG
 *  WebSocket API (browsers, Node 22+, the npm package `ws`). The client also
 *  sets `onmessage`, `onclose` and `onerror` on each socket and expects them
 *  to be called as that API does. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructorLike = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** What the client needs of an EventSource implementation (browsers have
 *  one; in Node pass one, e.g. from the npm package `eventsource`). */
export interface EventSourceLike {
  close(): void;
  addEventListener(type: string, listener: (ev: { data: string }) => void): void;
}

export type EventSourceConstructorLike = new (url: string) => EventSourceLike;

/** What the client needs of fetch (the WHATWG API), for the stream's POSTs. */
export type FetchLike = (
  url: string,
  init: { method: string; body?: string; headers: Record<string, string>; keepalive?: boolean },
) => Promise<{ status: number }>;

/** The transports: a WebSocket at /ws, or server-sent events at /sse with
 *  requests as POSTs. */
export type Transport = 'websocket' | 'sse';

export interface SwitchboardOptions {
  /** JWT, sent as the query parameter `token` (browsers cannot set headers
   *  on a WebSocket handshake). Takes precedence over `user`. */
  token?: string | undefined;
  /** Development mode identity (`?user=`), for servers run with `--auth=none`. */
  user?: string | undefined;
  /** The WebSocket implementation; default `globalThis.WebSocket`. In Node
   *  before 22 pass one, e.g. `WebSocket` from the npm package `ws`. */
  WebSocket?: WebSocketConstructorLike | undefined;
  /** Connect right away (on the next microtask, so listeners added just
   *  after the constructor see the first `connecting` state). With `false`,
   *  requests reject with `closed` until connect() is called. Default true. */
  autoConnect?: boolean | undefined;
  /** Milliseconds before a request without an answer rejects with
   *  `timeout`; requests made while not connected wait for the next welcome
   *  within the same time. Default 10000. */
  requestTimeout?: number;
  /** Milliseconds for a connection attempt up to the welcome frame; past it
   *  the attempt ends (close code 1006, reason `connect_timeout`) and the
   *  client tries again. Default 10000. */
  connectTimeout?: number;
  /** Milliseconds: the ceiling of the first reconnect delay, doubled after
   *  every further failed attempt; each delay is random between 0 and the
   *  ceiling (full jitter). Default 500. */
  backoffBase?: number;
  /** Milliseconds: the largest reconnect delay ceiling. Default 15000. */
  backoffCap?: number;
  /** Milliseconds a connection must stay open to reset the backoff to
   *  `backoffBase`. Default 10000. */
  stableAfter?: number;
  /** Close codes after which the client does not reconnect but goes to
   *  `closed`; replaces the default list [1002, 1003, 1007, 4002, 4003]
   *  (client bugs, replaced by a newer connection, kicked). */
  noReconnectCodes?: number[];
  /** WebSocket subprotocols offered. Default ['switchboard.v1']. */
  protocols?: string[];
  /** `'auto'` (default): a WebSocket, and an event stream (/sse) when a
   *  WebSocket cannot open; or one transport only. */
  transport?: 'auto' | Transport | undefined;
  /** The event-stream endpoint; default the url's host with path /sse
   *  (http for ws, https for wss). */
  sseURL?: string | undefined;
  /** The EventSource implementation; default `globalThis.EventSource`.
   *  Without one (and fetch), `auto` never falls back. */
  EventSource?: EventSourceConstructorLike | undefined;
  /** The fetch implementation for the stream's POSTs; default `globalThis.fetch`. */
  fetch?: FetchLike | undefined;
}

/** The connection state:
 *  - `connecting`: an attempt is under way (up to the welcome frame);
 *  - `open`: welcomed; requests go out right away;
 *  - `reconnecting`: the connection ended, the next attempt is scheduled;
 *  - `closed`: no more attempts (close(), or a code in `noReconnectCodes`). */
export type SwitchboardState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Detail of `state`, per state. */
export type StateDetail = { transport: Transport } & (
  | { state: 'connecting' }
  | { state: 'open' }
  | {
      state: 'reconnecting';
      /** Milliseconds until the next attempt. */
      delay: number;
      /** Close code of the connection that ended (1006 without a close frame). */
      code: number;
      reason: string;
    }
  | {
      state: 'closed';
      code: number;
      reason: string;
    }
);

/** Detail of `close`: a connection ended (also when a reconnect follows).
 *  `code` is 1006 when it ended without a close frame, with `reason`
 *  `connect_timeout` or `ping_timeout` when the client gave up on it. */
export interface CloseDetail {
  code: number;
  reason: string;
  /** The transport of the connection that ended. */
  transport: Transport;
}

/** Detail of `transport`: the next attempts use another transport. */
export interface TransportDetail {
  transport: Transport;
}

/** Detail of `join` and `leave`: a user entered or left a joined room. */
export interface PresenceChangeDetail {
  room: string;
  user: string;
}

/** Detail of `presence`: the full sorted user list of a joined room, after
 *  every change. */
export interface PresenceDetail {
  room: string;
  users: string[];
}

/** Detail of `reset`: messages of a history room were missed and cannot be
 *  recovered; reload the room's state. `offset` and `epoch` are the room's
 *  current ones, absent in a room without history. */
export interface ResetDetail {
  room: string;
  offset?: number;
  epoch?: string;
}

/** Detail of `error`: an error frame that answers no pending request, or a
 *  failed rejoin after a reconnect (then `room` is set and `code` may be one
 *  of the client's own; after `forbidden` or `bad_request` the room is no
 *  longer joined). */
export interface ErrorDetail {
  type: 'error';
  ref?: string;
  code: SwitchboardErrorCode;
  message: string;
  room?: string;
}

/** Every event and the detail object its listeners receive. */
export interface SwitchboardEventMap {
  /** The welcome frame of each (re)connection. */
  open: WelcomeFrame;
  /** A live message, or one recovered after a reconnect (emitted before any
   *  later live one, never twice). */
  message: MessageFrame;
  reset: ResetDetail;
  join: PresenceChangeDetail;
  leave: PresenceChangeDetail;
  presence: PresenceDetail;
  error: ErrorDetail;
  close: CloseDetail;
  state: StateDetail;
  transport: TransportDetail;
}

export type SwitchboardEvent = keyof SwitchboardEventMap;

export type SwitchboardListener<K extends SwitchboardEvent> = (detail: SwitchboardEventMap[K]) => void;

/** Options of join(). */
export interface JoinOptions {
  /** Whether this connection receives its own publishes to the room. Default true. */
  echo?: boolean | undefined;
  /** Recover the messages after this offset (with `epoch`), e.g. a saved
   *  position(room).offset; the client does this itself after a reconnect. */
  since?: number | null | undefined;
  /** The epoch `since` counts in, e.g. a saved position(room).epoch. */
  epoch?: string | null | undefined;
}

/** Where a joined history room stands for this client. */
export interface Position {
  /** The last offset delivered. */
  offset: number;
  /** The epoch it counts in; null when unknown (the stream restarted). */
  epoch: string | null;
}

export class Switchboard {
  /**
   * @param url the /ws endpoint, e.g. `ws://127.0.0.1:8080/ws`; in a browser
   *   page it may be omitted to use the page's own host. A string, not a URL
   *   object.
   * @throws TypeError without a WebSocket implementation, or without a URL
   *   outside a browser page.
   */
  constructor(url?: string, options?: SwitchboardOptions);
  /** In a browser page: connects to the page's own host at /ws. */
  constructor(options: SwitchboardOptions);

  /** The endpoint, without the token or user parameter. */
  readonly url: string;
  /** The current connection state (see the `state` event). */
  readonly state: SwitchboardState;
  /** The transport of the current (or last) connection attempt. */
  readonly transport: Transport;
  /** The welcome frame of the current connection; null while not open. */
  readonly welcome: WelcomeFrame | null;

  /** Adds a listener; returns a function that removes it. A listener that
   *  throws does not stop the others (the error is rethrown asynchronously). */
  on<K extends SwitchboardEvent>(type: K, fn: SwitchboardListener<K>): () => void;
  /** Removes a listener added with on() (the same function). */
  off<K extends SwitchboardEvent>(type: K, fn: SwitchboardListener<K>): void;
  /** Adds a listener for the next event of that type only; returns a
   *  function that removes it before then. */
  once<K extends SwitchboardEvent>(type: K, fn: SwitchboardListener<K>): () => void;

  /** Starts connecting: after close(), or with `autoConnect: false`. */
  connect(): void;
  /** Closes for good: no reconnect; requests in flight reject with
   *  `disconnected`, queued ones with `closed`. */
  close(): void;

  /** Joins a room; resolves with the sorted users in it. The room is
   *  rejoined after every reconnect until leave(). Rejects with a
   *  SwitchboardError (`forbidden`, `too_many_rooms`, `bad_request`, or a
   *  client code). */
  join(room: string, options?: JoinOptions): Promise<string[]>;
  /** Leaves a room; it is no longer rejoined, even if the request fails
   *  (`not_joined` when the connection was not in it). */
  leave(room: string): Promise<AckFrame>;
  /** Sends a message to everyone in a joined room. */
  publish(room: string, data: MessageData): Promise<AckFrame>;
  /** Sends a message to every connection of a user (acknowledged even when
   *  the user is not online). */
  send(user: string, data: MessageData): Promise<AckFrame>;
  /** Asks who is in a room (on the server's node; the room need not be
   *  joined); resolves with the sorted user ids. */
  presence(room: string): Promise<string[]>;

  /** The sorted users of a joined room, as this client knows them; empty
   *  for a room it is not in. */
  usersIn(room: string): string[];
  /** The rooms this client is in (and rejoins after a reconnect). */
  joinedRooms(): string[];
  /** Where a joined room with history stands for this client (what a later
   *  join(room, {since: offset, epoch}) resumes from), or null. */
  position(room: string): Position | null;
}

export default Switchboard;
