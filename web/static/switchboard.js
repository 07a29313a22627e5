// Switchboard JavaScript client: an ES module with no build step that runs in
// browsers and in Node.js (20+, with a WebSocket implementation such as the npm
// package `ws` passed as the `WebSocket` option).
//
//   import { Switchboard } from './switchboard.js';
//   const sb = new Switchboard('ws://127.0.0.1:8080/ws', { user: 'alice' });
//   sb.on('message', (m) => console.log(m.from, m.data));
//   sb.on('presence', ({ room, users }) => console.log(room, users));
//   const users = await sb.join('lobby');
//   await sb.publish('lobby', { text: 'hi' });
//
// What it does for you (see docs/protocol.md):
// - answers every server {"type":"ping"} with {"type":"pong"};
// - sends its own {"type":"ping"} every ping_interval and treats the server as
//   gone when nothing at all arrived for ping_interval + pong_timeout;
// - reconnects with exponential backoff and full jitter (0.5 s doubling up to
//   15 s; reset once a connection stayed open 10 s), except after close codes
//   4002 (replaced), 4003 (kicked), 1002/1003/1007 (client bugs) or close();
// - rejoins its rooms after every reconnect;
// - keeps one user set per joined room from the join ack, join, leave and
//   presence_diff frames, and emits `presence` with the sorted list after
//   every change;
// - resumes rooms that keep history (see below) without a gap or a duplicate;
// - falls back to server-sent events (GET /sse + POSTs) when a WebSocket
//   cannot open (see "Transports" below).
//
// Transports. With the default `transport: 'auto'` the client opens a
// WebSocket; when an attempt closes before the welcome frame (a proxy that
// refuses the upgrade, a blocked WebSocket) and an EventSource exists, the
// next attempt, at once, is an event stream at the same host's /sse (the
// `sseURL` option overrides it): frames arrive as events, requests go as
// POSTs carrying the stream's session. Everything above works the same on
// it. The client stays on the stream while it works; when a stream attempt
// fails before its welcome too, the next attempt tries a WebSocket again.
// A client whose WebSocket has opened once never falls back: WebSockets get
// through, so a later failure is the network or the server, which a stream
// would not get past either.
// `transport: 'websocket'` or `'sse'` pins one. `sb.transport` says which
// one the current (or last) connection uses; 'state' events carry it.
//
// Resuming rooms with history. In a room the server keeps history for
// (--history-rooms), every message carries `offset` (per room, +1 per
// message) and the join ack carries `offset` (the newest kept) and `epoch`.
// For each joined room the client remembers the epoch of the latest join ack
// and the last offset it delivered (from live messages and recovered ones;
// the ack's offset right after a plain join); position(room) returns them.
// - After every reconnect it rejoins such a room with `since` (that offset)
//   and `epoch`. When the ack says `recovered: true`, its `messages` (those
//   after `since`, oldest first) are emitted one by one as ordinary `message`
//   events, before any later live message: the application sees the missed
//   messages in order, then the live ones, as if nothing had happened.
// - When the ack says `recovered: false` (the history restarted with a new
//   epoch, or no longer reaches back to `since`, or the room keeps no history
//   any more), the missed messages are lost to the client: it emits `reset`
//   {room, offset, epoch} and goes on from the ack's offset and epoch. The
//   application should reload what it shows of that room (from its own
//   backend) and carry on with the live messages that follow.
// - A message is never emitted twice: a live or recovered message whose
//   offset is at or below the last one delivered for its room, or whose id
//   is one of the room's last 256 delivered, is dropped. The one exception
//   is a live message at such an offset with a new id: the stream started
//   again while connected (e.g. the server let an idle room's history
//   expire); it is delivered, counting starts again from it, and as its new
//   epoch is unknown the next resume of that room ends in `reset`.
// - join(room, {since, epoch}) asks for the same recovery explicitly (e.g.
//   with a position an application saved before a page reload); its ack is
//   handled the same way (`message` events, or `reset`).
// - Direct messages kept with --history-users are tracked the same way under
//   the private room `user:<id>` when the client joined it (unless that room
//   is itself a history room: its own messages take precedence then).
//
// Events (on(type, fn) / off(type, fn); fn receives one detail object):
//   open     the welcome frame {conn, user, ping_interval, pong_timeout, ...}
//   message  a message frame {room | to | broadcast, from, data, id, ts,
//            offset?}: live, or recovered after a reconnect (same shape)
//   reset    {room, offset?, epoch?}: messages of a history room were
//            missed and cannot be recovered; reload the room's state (offset
//            and epoch are the room's current ones, absent without history)
//   join     {room, user}: a user entered a joined room
//   leave    {room, user}: a user left a joined room
//   presence {room, users}: the full sorted user list of a joined room
//   error    an error frame that answers no pending request
//   close    {code, reason}: a connection ended (also before reconnecting)
//   state    {state, transport, delay?}: 'connecting' | 'open' |
//            'reconnecting' (delay in ms until the next attempt) | 'closed'
//            (no more attempts); transport is 'websocket' or 'sse'
//   transport {transport}: the next attempts use another transport

const DEFAULTS = {
  requestTimeout: 10000, // ms before a request without answer rejects
  connectTimeout: 10000, // ms for the handshake up to welcome
  backoffBase: 500,
  backoffCap: 15000,
  stableAfter: 10000, // ms a connection must stay open to reset the backoff
  noReconnectCodes: [1002, 1003, 1007, 4002, 4003],
  protocols: ['switchboard.v1'],
  transport: 'auto', // 'auto' | 'websocket' | 'sse'
};

const RECENT_IDS = 256; // ids of delivered history messages kept per room

const OPEN = 1; // WebSocket.OPEN, the same in browsers and in ws

/** Error for a failed request; `code` is the server's error code or one of
 *  'timeout', 'disconnected', 'closed'. */
export class SwitchboardError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = 'SwitchboardError';
    this.code = code;
  }
}

export class Switchboard {
  /**
   * @param {string} url  the /ws endpoint, e.g. ws://127.0.0.1:8080/ws; in a
   *   browser it may be omitted to use the page's own host.
   * @param {object} [options]
   * @param {string} [options.token]  JWT, sent as the query parameter `token`
   * @param {string} [options.user]   development mode identity (`?user=`)
   * @param {Function} [options.WebSocket]  implementation; default globalThis.WebSocket
   * @param {'auto'|'websocket'|'sse'} [options.transport='auto']  see "Transports"
   * @param {string} [options.sseURL]  the /sse endpoint; default: url's host, path /sse
   * @param {Function} [options.EventSource]  implementation; default globalThis.EventSource
   * @param {Function} [options.fetch]  implementation; default globalThis.fetch
   * @param {boolean} [options.autoConnect=true]  connect right away
   */
  constructor(url, options = {}) {
    if (url && typeof url === 'object') { options = url; url = undefined; }
    this.options = { ...DEFAULTS, ...options };
    this.url = url || defaultURL();
    this.WebSocket = this.options.WebSocket || globalThis.WebSocket;
    this.EventSource = this.options.EventSource || globalThis.EventSource;
    this.fetch = this.options.fetch || globalThis.fetch?.bind(globalThis);
    const canSSE = typeof this.EventSource === 'function' && typeof this.fetch === 'function';
    const pinned = this.options.transport;
    if (!['auto', 'websocket', 'sse'].includes(pinned)) {
      throw new TypeError(`switchboard: transport must be 'auto', 'websocket' or 'sse', not ${pinned}`);
    }
    if (pinned === 'sse' && !canSSE) {
      throw new TypeError('switchboard: transport sse needs EventSource and fetch implementations (options EventSource, fetch)');
    }
    if (pinned !== 'sse' && typeof this.WebSocket !== 'function') {
      throw new TypeError('switchboard: no WebSocket implementation; pass one as the WebSocket option (e.g. from the npm package ws)');
    }
    this.canFallBack = pinned === 'auto' && canSSE;
    this.transport = pinned === 'sse' ? 'sse' : 'websocket';
    this.state = 'closed';
    this.welcome = null;
    this.ws = null;
    // room -> {echo, since, epoch, ids, own}: rejoined after reconnect; since
    // is the last offset delivered, ids the latest delivered message ids,
    // own says the room's own messages carry offsets (see track).
    this.rooms = new Map();
    this.users = new Map(); // room -> Set of user ids
    this.listeners = new Map();
    this.pending = new Map(); // id -> request
    this.outbox = []; // requests made while not open, sent after the next welcome
    this.nextId = 1;
    this.attempt = 0;
    this.stopped = true;
    this.timers = {};
    // Connect on the next microtask, so that listeners added right after the
    // constructor see the first 'connecting' state.
    if (this.options.autoConnect !== false) {
      this.stopped = false;
      queueMicrotask(() => { if (!this.stopped && !this.ws) this.connect(); });
    }
  }

  // ---- events ----

  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }

  once(type, fn) {
    const off = this.on(type, (d) => { off(); fn(d); });
    return off;
  }

  emit(type, detail) {
    for (const fn of [...(this.listeners.get(type) || [])]) {
      try { fn(detail); } catch (err) { setTimeout(() => { throw err; }); }
    }
  }

  setState(state, extra = {}) {
    this.state = state;
    this.emit('state', { state, transport: this.transport, ...extra });
  }

  // ---- connection ----

  /** Starts connecting (again, after close()). */
  connect() {
    this.stopped = false;
    clearTimeout(this.timers.retry);
    if (this.ws) return;
    this.open();
  }

  open() {
    const u = new URL(this.transport === 'sse' ? this.options.sseURL || sseURLFor(this.url) : this.url);
    if (this.options.token) u.searchParams.set('token', this.options.token);
    else if (this.options.user) u.searchParams.set('user', this.options.user);
    this.setState('connecting');
    this.welcomed = false;
    let ws;
    try {
      ws = this.transport === 'sse'
        ? new EventStreamSocket(u.toString(), this.EventSource, this.fetch)
        : new this.WebSocket(u.toString(), this.options.protocols);
    } catch (err) {
      this.dropped(1006, String(err && err.message || err));
      return;
    }
    this.ws = ws;
    this.welcome = null;
    this.timers.connect = setTimeout(() => this.abandon(ws, 'connect_timeout'), this.options.connectTimeout);
    ws.onmessage = (ev) => this.receive(ws, ev.data);
    ws.onclose = (ev) => { if (ws === this.ws) this.dropped(ev.code, ev.reason); };
    ws.onerror = () => {}; // a close event follows
  }

  /** Gives up on a connection that went silent: stop listening to it and
   *  treat it as closed right away (a close handshake with a dead peer would
   *  take long). */
  abandon(ws, reason) {
    if (ws !== this.ws) return;
    ws.onmessage = ws.onclose = null;
    try {
      if (typeof ws.terminate === 'function') ws.terminate();
      else ws.close(1000);
    } catch { /* already closing */ }
    this.dropped(1006, reason);
  }

  dropped(code, reason) {
    this.ws = null;
    this.welcome = null;
    for (const k of ['connect', 'ping', 'watchdog', 'stable']) {
      clearTimeout(this.timers[k]);
      clearInterval(this.timers[k]);
    }
    this.failPending(new SwitchboardError('disconnected', `connection closed (${code}${reason ? ' ' + reason : ''})`));
    // The user sets stay as they were until the rejoin acks replace them, so
    // a reconnect announces only real changes.
    this.emit('close', { code, reason: reason || '', transport: this.transport });
    const neverOpened = !this.welcomed;
    if (this.stopped || this.options.noReconnectCodes.includes(code)) {
      this.stopped = true;
      this.failOutbox(new SwitchboardError('closed', `connection closed (${code}${reason ? ' ' + reason : ''}), not reconnecting`));
      this.setState('closed', { code, reason: reason || '' });
      return;
    }
    if (this.canFallBack && neverOpened && !this.webSocketWorked) {
      // This transport could not open: the other one gets the next try.
      this.transport = this.transport === 'websocket' ? 'sse' : 'websocket';
      this.emit('transport', { transport: this.transport });
      if (this.transport === 'sse') { // a WebSocket failed: try the stream at once
        this.timers.retry = setTimeout(() => { if (!this.stopped) this.open(); }, 0);
        this.setState('reconnecting', { delay: 0, code, reason: reason || '' });
        return;
      }
    }
    const ceiling = Math.min(this.options.backoffCap, this.options.backoffBase * 2 ** this.attempt);
    const delay = Math.round(Math.random() * ceiling); // full jitter
    this.attempt++;
    this.timers.retry = setTimeout(() => { if (!this.stopped) this.open(); }, delay);
    this.setState('reconnecting', { delay, code, reason: reason || '' });
  }

  /** Closes for good: no reconnect; pending and queued requests reject. */
  close() {
    this.stopped = true;
    clearTimeout(this.timers.retry);
    const ws = this.ws;
    if (ws) {
      ws.onmessage = ws.onclose = null;
      try { ws.close(1000, 'bye'); } catch { /* not open yet */ }
      this.dropped(1000, 'bye');
    } else if (this.state !== 'closed') {
      this.failOutbox(new SwitchboardError('closed', 'client closed'));
      this.setState('closed', { code: 1000, reason: 'bye' });
    }
  }

  // ---- incoming frames ----

  receive(ws, raw) {
    if (ws !== this.ws) return;
    this.lastFrame = Date.now();
    let f;
    try { f = JSON.parse(typeof raw === 'string' ? raw : String(raw)); } catch { return; }
    if (!f || typeof f !== 'object') return;
    switch (f.type) {
      case 'welcome': return this.onWelcome(f);
      case 'ping': return this.sendRaw('{"type":"pong"}');
      case 'pong': return;
      case 'ack': return this.onAnswer(f, true);
      case 'error': return this.onAnswer(f, false);
      case 'message': return this.onMessage(f);
      case 'join': return this.applyPresence(f.room, [f.user], []);
      case 'leave': return this.applyPresence(f.room, [], [f.user]);
      case 'presence_diff': return this.applyPresence(f.room, f.joins || [], f.leaves || []);
      case 'presence': {
        for (const p of this.pending.values()) {
          if (p.kind === 'presence' && p.room === f.room && !p.users) { p.users = f.users || []; break; }
        }
        if (this.users.has(f.room)) this.resetPresence(f.room, f.users || []);
        return;
      }
      default: // unknown frame types are ignored, as the protocol asks
    }
  }

  /** The resume state a message counts against: its room's, or for a
   *  direct message the one of the private room user:<to>, when joined. */
  track(f) {
    if (typeof f.room === 'string') {
      const r = this.rooms.get(f.room);
      if (r && typeof f.offset === 'number') r.own = true;
      return r;
    }
    if (typeof f.to !== 'string') return undefined;
    const r = this.rooms.get('user:' + f.to);
    return r && !r.own ? r : undefined;
  }

  /** A live message: emitted unless this client delivered it already. */
  onMessage(f) {
    const r = this.track(f);
    if (r && typeof f.offset === 'number') {
      if (f.id != null && r.ids.has(f.id)) return; // delivered already
      if (typeof r.since === 'number' && f.offset <= r.since) {
        if (f.id == null) return; // taken for delivered already
        // A new message at an old offset: the stream started again (a new
        // epoch, unknown until the next join ack), and counting does too.
        r.epoch = undefined;
      }
      delivered(r, f);
    }
    this.emit('message', f);
  }

  onWelcome(f) {
    clearTimeout(this.timers.connect);
    this.welcome = f;
    this.welcomed = true;
    if (this.transport === 'websocket') this.webSocketWorked = true;
    const interval = Math.max(0.1, Number(f.ping_interval) || 25) * 1000;
    const bound = interval + Math.max(0, Number(f.pong_timeout) || 10) * 1000;
    this.timers.ping = setInterval(() => this.sendRaw('{"type":"ping"}'), interval);
    const watch = () => {
      const silent = Date.now() - this.lastFrame;
      if (silent >= bound) this.abandon(this.ws, 'ping_timeout');
      else this.timers.watchdog = setTimeout(watch, bound - silent);
    };
    this.timers.watchdog = setTimeout(watch, bound);
    this.timers.stable = setTimeout(() => { this.attempt = 0; }, this.options.stableAfter);
    this.setState('open');
    this.emit('open', f);
    for (const [room, r] of this.rooms) {
      const frame = { type: 'join', room };
      if (r.echo === false) frame.echo = false;
      if (typeof r.since === 'number') { frame.since = r.since; if (r.epoch != null) frame.epoch = r.epoch; }
      this.request(frame, { kind: 'join', room, rejoin: true }).catch((err) => {
        if (err.code === 'forbidden' || err.code === 'bad_request') {
          this.rooms.delete(room);
          this.users.delete(room);
        }
        this.emit('error', { type: 'error', code: err.code, message: `rejoin ${room}: ${err.message}`, room });
      });
    }
    const queued = this.outbox;
    this.outbox = [];
    for (const p of queued) this.transmit(p);
  }

  onAnswer(f, ok) {
    const p = f.ref != null ? this.pending.get(f.ref) : undefined;
    if (!p) {
      if (!ok) this.emit('error', f);
      return;
    }
    this.pending.delete(f.ref);
    clearTimeout(p.timer);
    if (!ok) {
      p.reject(new SwitchboardError(f.code || 'internal', f.message));
      return;
    }
    if (p.kind === 'join') {
      if (p.rejoin && !this.rooms.has(p.room)) { p.resolve([]); return; } // left meanwhile
      this.onJoined(p, f);
      p.resolve([...this.users.get(p.room) || []].sort());
    } else if (p.kind === 'presence') {
      p.resolve(p.users || []);
    } else {
      p.resolve(f);
    }
  }

  /** A join ack: records the room's resume state, announces presence, then
   *  emits the recovered messages or `reset`. */
  onJoined(p, f) {
    const room = p.room;
    const prev = this.rooms.get(room);
    const r = {
      echo: p.frame.echo,
      since: undefined,
      epoch: f.epoch != null ? f.epoch : undefined,
      ids: prev ? prev.ids : new Set(),
      own: prev ? prev.own : false,
    };
    const asked = typeof p.frame.since === 'number' ? p.frame.since : undefined;
    // What this client delivered already, when it counts in the ack's epoch.
    let seen = asked;
    if (prev && typeof prev.since === 'number' && prev.epoch != null && prev.epoch === r.epoch) {
      seen = Math.max(seen ?? prev.since, prev.since);
    }
    const offset = typeof f.offset === 'number' ? f.offset : undefined;
    const recovered = f.recovered === true && asked !== undefined;
    if (recovered || f.recovered !== false) r.since = maxOffset(seen, offset);
    else r.since = offset; // the gap cannot be filled: start again from here
    this.rooms.set(room, r);
    this.resetPresence(room, f.users || []);
    if (recovered) {
      for (const m of Array.isArray(f.messages) ? f.messages : []) {
        if (!m || typeof m !== 'object') continue;
        if (typeof m.offset === 'number') {
          if (seen !== undefined && m.offset <= seen) continue; // had it
          if (m.id != null && r.ids.has(m.id)) continue;
          seen = m.offset;
          delivered(r, m);
        }
        this.emit('message', m);
      }
      r.since = maxOffset(r.since, offset);
    } else if (f.recovered === false) {
      const detail = { room };
      if (offset !== undefined) detail.offset = offset;
      if (r.epoch !== undefined) detail.epoch = r.epoch;
      this.emit('reset', detail);
    }
  }

  resetPresence(room, users) {
    const now = new Set(users);
    const before = this.users.get(room);
    this.users.set(room, now);
    if (before) { // a rejoin or a presence answer: announce what changed meanwhile
      for (const u of now) if (!before.has(u)) this.emit('join', { room, user: u });
      for (const u of before) if (!now.has(u)) this.emit('leave', { room, user: u });
    }
    this.emit('presence', { room, users: [...now].sort() });
  }

  applyPresence(room, joins, leaves) {
    const set = this.users.get(room);
    if (!set) return;
    let changed = false;
    for (const u of leaves) if (set.delete(u)) { changed = true; this.emit('leave', { room, user: u }); }
    for (const u of joins) if (!set.has(u)) { set.add(u); changed = true; this.emit('join', { room, user: u }); }
    if (changed) this.emit('presence', { room, users: [...set].sort() });
  }

  // ---- requests ----

  sendRaw(text) {
    const ws = this.ws;
    if (ws && ws.readyState === OPEN) {
      try { ws.send(text); return true; } catch { /* closing */ }
    }
    return false;
  }

  request(frame, meta = {}) {
    if (this.stopped && !meta.rejoin) {
      return Promise.reject(new SwitchboardError('closed', 'client is closed'));
    }
    return new Promise((resolve, reject) => {
      const id = String(this.nextId++);
      const p = { id, frame: { ...frame, id }, resolve, reject, ...meta };
      p.timer = setTimeout(() => {
        this.pending.delete(id);
        const i = this.outbox.indexOf(p);
        if (i >= 0) this.outbox.splice(i, 1);
        reject(new SwitchboardError('timeout', `${frame.type} timed out after ${this.options.requestTimeout} ms`));
      }, this.options.requestTimeout);
      if (this.welcome) this.transmit(p);
      else this.outbox.push(p);
    });
  }

  transmit(p) {
    this.pending.set(p.id, p);
    if (!this.sendRaw(JSON.stringify(p.frame))) {
      this.pending.delete(p.id);
      clearTimeout(p.timer);
      p.reject(new SwitchboardError('disconnected', 'not connected'));
    }
  }

  failPending(err) {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) { clearTimeout(p.timer); p.reject(err); }
  }

  failOutbox(err) {
    const all = this.outbox;
    this.outbox = [];
    for (const p of all) { clearTimeout(p.timer); p.reject(err); }
  }

  /** Joins a room; resolves with the sorted users in it. The room is
   *  rejoined after every reconnect until leave(). */
  join(room, { since, epoch, echo } = {}) {
    const frame = { type: 'join', room };
    if (echo === false || echo === true) frame.echo = echo;
    if (since != null) frame.since = since;
    if (epoch != null) frame.epoch = epoch;
    return this.request(frame, { kind: 'join', room });
  }

  /** Leaves a room; it is no longer rejoined. */
  leave(room) {
    this.rooms.delete(room);
    this.users.delete(room);
    return this.request({ type: 'leave', room });
  }

  publish(room, data) { return this.request({ type: 'publish', room, data }); }

  send(user, data) { return this.request({ type: 'send', to: user, data }); }

  /** Asks who is in a room; resolves with the sorted user ids. */
  presence(room) { return this.request({ type: 'presence', room }, { kind: 'presence', room }); }

  /** The sorted users of a joined room, as this client knows them. */
  usersIn(room) { return [...(this.users.get(room) || [])].sort(); }

  /** The rooms this client is in (and rejoins after a reconnect). */
  joinedRooms() { return [...this.rooms.keys()]; }

  /** Where a joined room with history stands for this client: {offset,
   *  epoch}, the last offset delivered and the epoch it counts in (what a
   *  later join(room, {since: offset, epoch}) resumes from), or null. */
  position(room) {
    const r = this.rooms.get(room);
    if (!r || typeof r.since !== 'number') return null;
    return { offset: r.since, epoch: r.epoch ?? null };
  }
}

/** Records m, a history message about to be emitted, in r. */
function delivered(r, m) {
  r.since = m.offset;
  if (m.id == null) return;
  r.ids.add(m.id);
  if (r.ids.size > RECENT_IDS) r.ids.delete(r.ids.values().next().value);
}

function maxOffset(a, b) {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.max(a, b);
}

/** The event-stream endpoint beside a WebSocket endpoint: same host, http(s),
 *  path /sse (a path ending in /ws keeps its prefix). */
function sseURLFor(wsURL) {
  const u = new URL(wsURL);
  u.protocol = u.protocol === 'wss:' ? 'https:' : u.protocol === 'ws:' ? 'http:' : u.protocol;
  u.pathname = u.pathname.endsWith('/ws') ? u.pathname.slice(0, -3) + '/sse' : '/sse';
  return u.toString();
}

/** A server-sent-events connection with the part of the WebSocket interface
 *  the client uses (readyState, send, close, terminate, onmessage, onclose):
 *  frames arrive as events; sent frames go as POSTs with the session from
 *  the welcome, one request at a time and in order, queued frames batched
 *  one per line within max_message_bytes. */
class EventStreamSocket {
  constructor(url, EventSource, fetch) {
    this.readyState = 0;
    this.fetch = fetch;
    this.endpoint = url.split('?')[0];
    this.session = null;
    this.limit = 65536;
    this.queue = [];
    this.sending = false;
    this.onmessage = this.onclose = this.onerror = null;
    const es = new EventSource(url);
    this.es = es;
    es.onmessage = (ev) => {
      if (this.readyState === 3) return;
      if (this.session === null) {
        try {
          const f = JSON.parse(ev.data);
          if (f && f.type === 'welcome' && typeof f.session === 'string') {
            this.session = f.session;
            if (f.max_message_bytes > 0) this.limit = f.max_message_bytes;
            this.readyState = OPEN;
          }
        } catch { /* not JSON: the client ignores it too */ }
      }
      this.onmessage?.({ data: ev.data });
    };
    es.addEventListener('close', (ev) => {
      let code = 1005; let reason = '';
      try { ({ code, reason } = JSON.parse(ev.data)); } catch { /* keep 1005 */ }
      this.finish(code, reason);
    });
    // EventSource would reconnect by itself; the client does that, with its
    // own backoff and resume, so a failed stream is a closed one.
    es.onerror = () => this.finish(1006, 'event stream failed');
  }

  send(text) {
    if (this.readyState !== OPEN) throw new Error('event stream not open');
    this.queue.push(text);
    this.pump();
  }

  async pump() {
    if (this.sending) return;
    this.sending = true;
    while (this.queue.length > 0 && this.readyState === OPEN) {
      let n = 1; let size = this.queue[0].length;
      while (n < this.queue.length && size + 1 + this.queue[n].length <= this.limit) size += 1 + this.queue[n++].length;
      const body = this.queue.splice(0, n).join('\n');
      try {
        const res = await this.fetch(this.endpoint, {
          method: 'POST', body, headers: { 'Content-Type': 'text/plain', 'Switchboard-Session': this.session },
        });
        // 413 is followed by the stream's close event (1009).
        if (res.status === 404) this.finish(1006, 'session gone');
      } catch {
        this.finish(1006, 'request failed');
      }
    }
    this.sending = false;
  }

  /** Ends the stream as a close frame would: the server announces the
   *  leave at once instead of when the socket's loss is noticed. */
  close() {
    if (this.readyState === 3) return;
    if (this.session !== null) {
      this.fetch(this.endpoint, { method: 'DELETE', keepalive: true, headers: { 'Switchboard-Session': this.session } }).catch(() => {});
    }
    this.finish(1000, 'bye');
  }

  terminate() { this.finish(1006, 'terminated'); }

  finish(code, reason) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.queue = [];
    this.es.close();
    const onclose = this.onclose;
    if (onclose) queueMicrotask(() => onclose({ code, reason }));
  }
}

function defaultURL() {
  const loc = globalThis.location;
  if (!loc || !loc.host) throw new TypeError('switchboard: a URL is needed outside a browser page');
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
}

export default Switchboard;
