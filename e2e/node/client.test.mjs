// Tests of the page's JavaScript client, web/static/switchboard.js, in Node
// with the npm package ws as its WebSocket, against the real server binary.
// Run by e2e/nodeclient_test.go (TestNodeClient), which starts the server
// with --auth none --ping-interval 1s --pong-timeout 1s
// --max-conns-per-user 1 --per-user-policy evict-oldest --api-key KEY
// --history-rooms h:* (memory history: a restart starts a new epoch) and
// passes:
//   SWITCHBOARD_URL      ws://host:port
//   SWITCHBOARD_CONTROL  http://host:port of the control endpoint
//                        (POST /stop /start /restart /sigstop /sigcont)
//   SWITCHBOARD_API_KEY  the backend API key (for /api/disconnect, /api/publish)
// Every client uses its own user name: the server keeps one connection per user.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { Switchboard } from '../../web/static/switchboard.js';

const BASE = process.env.SWITCHBOARD_URL; // ws://host:port
const URL_ = BASE && BASE + '/ws';
const CONTROL = process.env.SWITCHBOARD_CONTROL;
const API_KEY = process.env.SWITCHBOARD_API_KEY;
assert.ok(BASE && CONTROL && API_KEY, 'SWITCHBOARD_URL, SWITCHBOARD_CONTROL and SWITCHBOARD_API_KEY must be set');
const BOUND_MS = 2000; // ping_interval + pong_timeout

const clients = [];
after(() => { for (const c of clients) c.close(); });

// A WebSocket that records what the client sends and receives.
function recordingWebSocket(log) {
  return class extends WebSocket {
    constructor(...args) {
      super(...args);
      this.on('message', (data) => log.push(['in', JSON.parse(String(data))]));
    }
    send(data, ...rest) {
      log.push(['out', JSON.parse(data)]);
      return super.send(data, ...rest);
    }
  };
}

// A recording WebSocket whose network can be cut: while net.down, every new
// connection goes to a port where nothing listens and fails, as it would
// with the network gone; cut() also drops the open connection abruptly (no
// close handshake, like a network drop).
function cuttableNetwork() {
  const net = { down: false, log: [], sockets: [] };
  net.WebSocket = class extends WebSocket {
    constructor(url, ...rest) {
      super(net.down ? url.replace(/^ws:\/\/[^/]+/, 'ws://127.0.0.1:9') : url, ...rest);
      net.sockets.push(this);
      this.on('message', (data) => net.log.push(['in', JSON.parse(String(data))]));
    }
    send(data, ...rest) {
      net.log.push(['out', JSON.parse(data)]);
      return super.send(data, ...rest);
    }
  };
  net.cut = () => {
    net.down = true;
    for (const ws of net.sockets) ws.terminate();
  };
  net.restore = () => { net.down = false; };
  net.sent = (pred) => net.log.filter(([d, f]) => d === 'out' && pred(f)).map(([, f]) => f);
  return net;
}

// apiPublish publishes through the backend API; resolves with {id, offset, epoch}.
async function apiPublish(room, data) {
  const res = await fetch(BASE.replace(/^ws/, 'http') + '/api/publish', {
    method: 'POST',
    headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ room, data }),
  });
  const body = await res.text();
  assert.equal(res.status, 200, body);
  return JSON.parse(body);
}

// collect records the message events of one room and the reset events.
function collect(sb, room) {
  const got = { messages: [], resets: [] };
  sb.on('message', (m) => { if (m.room === room) got.messages.push(m); });
  sb.on('reset', (r) => got.resets.push(r));
  return got;
}

function client(user, opts = {}) {
  const sb = new Switchboard(URL_, { WebSocket, user, ...opts });
  sb.states = [];
  sb.closes = [];
  sb.on('state', (s) => sb.states.push(s));
  sb.on('close', (c) => sb.closes.push(c));
  clients.push(sb);
  return sb;
}

// next resolves with the next event of type that satisfies pred.
function next(sb, type, pred = () => true, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no ${type} event within ${ms} ms`)); }, ms);
    const off = sb.on(type, (d) => { if (pred(d)) { clearTimeout(timer); off(); resolve(d); } });
  });
}

const opened = (sb, ms) => (sb.state === 'open' ? Promise.resolve(sb.welcome) : next(sb, 'open', undefined, ms));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function control(action) {
  const res = await fetch(`${CONTROL}/${action}`, { method: 'POST' });
  assert.equal(res.status, 200, `control ${action}: ${await res.text()}`);
}

test('welcome, join, publish, send and presence resolve on their acks', async () => {
  const a = client('n-alice');
  const b = client('n-bob');
  const w = await opened(a);
  assert.equal(w.user, 'n-alice');
  assert.equal(w.ping_interval, 1);
  await opened(b);
  assert.deepEqual(await a.join('n-room'), ['n-alice']);
  const arrived = next(a, 'join', (j) => j.room === 'n-room');
  const listed = next(a, 'presence', (p) => p.room === 'n-room' && p.users.length === 2);
  assert.deepEqual(await b.join('n-room'), ['n-alice', 'n-bob']);
  assert.deepEqual(await arrived, { room: 'n-room', user: 'n-bob' });
  assert.deepEqual((await listed).users, ['n-alice', 'n-bob']);
  assert.deepEqual(a.usersIn('n-room'), ['n-alice', 'n-bob']);

  const got = next(a, 'message', (m) => m.room === 'n-room');
  const ack = await b.publish('n-room', { text: 'hi <b>' });
  assert.equal(ack.type, 'ack');
  const m = await got;
  assert.equal(m.from, 'n-bob');
  assert.deepEqual(m.data, { text: 'hi <b>' });

  const direct = next(b, 'message', (x) => x.to === 'n-bob');
  await a.send('n-bob', [1, 2, 3]);
  assert.deepEqual((await direct).data, [1, 2, 3]);

  assert.deepEqual(await a.presence('n-room'), ['n-alice', 'n-bob']);

  const gone = next(a, 'leave', (l) => l.room === 'n-room');
  await b.leave('n-room');
  assert.deepEqual(await gone, { room: 'n-room', user: 'n-bob' });
  assert.deepEqual(a.usersIn('n-room'), ['n-alice']);
  assert.deepEqual(b.joinedRooms(), []);
});

test('join with echo false and since', async () => {
  const a = client('n-echo');
  await opened(a);
  // The room keeps no history: nothing can be recovered.
  const reset = next(a, 'reset', (r) => r.room === 'n-echo-room');
  assert.deepEqual(await a.join('n-echo-room', { echo: false, since: 0, epoch: 'e0' }), ['n-echo']);
  assert.deepEqual(await reset, { room: 'n-echo-room' });
  assert.equal(a.position('n-echo-room'), null);
  let own = 0;
  a.on('message', () => own++);
  await a.publish('n-echo-room', 'x');
  await a.presence('n-echo-room'); // a round trip after the publish
  assert.equal(own, 0, 'echo:false connection got its own message');
});

test('errors reject with the server code; unanswered requests time out', async () => {
  const a = client('n-err', { requestTimeout: 700 });
  await opened(a);
  await assert.rejects(a.publish('n-not-joined', 1), (e) => e.code === 'not_joined' && e instanceof Error);
  await assert.rejects(a.join('bad room name!'), (e) => e.code === 'bad_request');
  await assert.rejects(a.join('user:someone-else'), (e) => e.code === 'forbidden');
  assert.deepEqual(a.joinedRooms(), []);

  // Freeze the server: the request is never answered.
  await control('sigstop');
  try {
    const t0 = Date.now();
    await assert.rejects(a.presence('n-any'), (e) => e.code === 'timeout');
    const took = Date.now() - t0;
    assert.ok(took >= 650 && took < 2000, `timeout after ${took} ms, want about 700`);
  } finally {
    await control('sigcont');
  }
  await opened(a, 8000); // the client may have given up on the frozen connection meanwhile
});

test('answers server pings and sends its own', async () => {
  const log = [];
  const a = client('n-ping', { WebSocket: recordingWebSocket(log) });
  await opened(a);
  await sleep(3 * BOUND_MS / 2 + 500); // longer than the server's bound
  assert.equal(a.state, 'open');
  assert.deepEqual(a.closes, [], 'the server closed a client that answers pings');
  const count = (dir, type) => log.filter(([d, f]) => d === dir && f.type === type).length;
  assert.ok(count('in', 'ping') >= 2, `server pings seen: ${count('in', 'ping')}`);
  assert.ok(count('out', 'pong') >= count('in', 'ping') - 0, 'every server ping answered with pong');
  assert.ok(count('out', 'ping') >= 2, `client pings sent: ${count('out', 'ping')}`);
  assert.ok(count('in', 'pong') >= 1, 'server answered the client ping');
});

test('a silent server is abandoned after ping_interval + pong_timeout; pending requests reject', async () => {
  const a = client('n-silent');
  await opened(a);
  await a.join('n-silent-room');
  await control('sigstop');
  let stopped = true;
  try {
    const t0 = Date.now();
    const pending = a.presence('n-silent-room');
    const closed = next(a, 'close', undefined, BOUND_MS + 3000);
    await assert.rejects(pending, (e) => e.code === 'disconnected');
    const c = await closed;
    const took = Date.now() - t0;
    assert.equal(c.reason, 'ping_timeout');
    assert.ok(took <= BOUND_MS + 1500, `gave up after ${took} ms`);
    await next(a, 'state', (s) => s.state === 'reconnecting', 1000).catch(() => {});
    assert.ok(a.states.some((s) => s.state === 'reconnecting'));
    // Listen before the server resumes: a reconnect queued in the listen
    // backlog may complete, and rejoin, before control() returns.
    const rejoined = next(a, 'presence', (p) => p.room === 'n-silent-room', 20000);
    await control('sigcont');
    stopped = false;
    await opened(a, 20000);
    assert.deepEqual((await rejoined).users, ['n-silent']);
  } finally {
    if (stopped) await control('sigcont');
  }
});

test('reconnects with backoff after the server restarts and rejoins its rooms', async () => {
  const a = client('n-re-a', { stableAfter: 1000 });
  const b = client('n-re-b');
  await Promise.all([opened(a), opened(b)]);
  await a.join('n-re-room');
  await b.join('n-re-room');

  await control('stop');
  await sleep(2500); // several failed attempts
  const delays = a.states.filter((s) => s.state === 'reconnecting').map((s) => s.delay);
  assert.ok(delays.length >= 2, `reconnect attempts while down: ${delays.length}`);
  delays.forEach((d, i) => assert.ok(d >= 0 && d <= Math.min(15000, 500 * 2 ** i), `delay ${i} = ${d} ms`));
  assert.ok(a.attempt >= 2);

  const rejoinedA = next(a, 'presence', (p) => p.room === 'n-re-room' && p.users.length === 2, 20000);
  await control('start');
  await Promise.all([opened(a, 20000), opened(b, 20000)]);
  await rejoinedA;
  const got = next(a, 'message', (m) => m.room === 'n-re-room');
  await b.publish('n-re-room', 'after restart');
  assert.equal((await got).data, 'after restart');

  await sleep(1200); // stableAfter
  assert.equal(a.attempt, 0, 'backoff reset after the connection stayed open');
});

test('no reconnect after 4003 kicked', async () => {
  const a = client('n-kick');
  await opened(a);
  const closed = next(a, 'close');
  const res = await fetch(BASE.replace(/^ws/, 'http') + '/api/disconnect', {
    method: 'POST',
    headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ user: 'n-kick' }),
  });
  assert.equal(res.status, 200, await res.text());
  assert.equal((await closed).code, 4003);
  await sleep(1500);
  assert.equal(a.state, 'closed');
  assert.equal(a.states.filter((s) => s.state === 'connecting').length, 1, 'it reconnected');
  await assert.rejects(a.presence('x'), (e) => e.code === 'closed');
});

test('no reconnect after 4002 replaced', async () => {
  const first = client('n-twice');
  await opened(first);
  const closed = next(first, 'close');
  const second = client('n-twice');
  await opened(second);
  assert.equal((await closed).code, 4002);
  await sleep(1500);
  assert.equal(first.state, 'closed');
  assert.equal(second.state, 'open', 'the first connection came back and evicted the second');
});

test('close() ends it for good and rejects queued requests', async () => {
  const a = client('n-close');
  const early = a.presence('n-close-room'); // queued until welcome
  await opened(a);
  assert.deepEqual(await early, []);
  a.close();
  assert.equal(a.state, 'closed');
  assert.deepEqual(a.closes.at(-1), { code: 1000, reason: 'bye', transport: 'websocket' });
  await assert.rejects(a.publish('r', 1), (e) => e.code === 'closed');
  await sleep(800);
  assert.equal(a.state, 'closed');
});

test('a dropped connection in a history room resumes: the missed messages once, in order, then live ones', async () => {
  const room = 'h:resume';
  const net = cuttableNetwork();
  const a = client('n-hist-a', { WebSocket: net.WebSocket, backoffCap: 1000 });
  const b = client('n-hist-b');
  const got = collect(a, room);
  await Promise.all([opened(a), opened(b)]);
  await a.join(room);
  const start = a.position(room);
  assert.equal(typeof start.offset, 'number');
  assert.equal(typeof start.epoch, 'string');
  await b.join(room);
  const seenLive = next(a, 'message', (m) => m.data === 'live 2');
  await b.publish(room, 'live 1');
  await b.publish(room, 'live 2');
  await seenLive;
  assert.deepEqual(a.position(room), { offset: start.offset + 2, epoch: start.epoch });

  // The network goes: the socket drops and reconnect attempts fail.
  const failedAgain = next(a, 'close', () => a.closes.length >= 2, 5000);
  net.cut();
  await failedAgain; // the first drop and at least one failed attempt
  assert.notEqual(a.state, 'open');
  // Published meanwhile, by the backend and by another client.
  const missed = ['api 1', 'b 1', 'api 2', 'b 2', 'api 3'];
  for (const text of missed) {
    if (text.startsWith('api')) {
      const p = await apiPublish(room, text);
      assert.equal(p.epoch, start.epoch);
    } else {
      await b.publish(room, text);
    }
  }
  assert.notEqual(a.state, 'open');

  // The network returns: the client reconnects by itself and catches up.
  const caughtUp = next(a, 'message', (m) => m.data === 'api 3', 15000);
  net.restore();
  await caughtUp;
  const rejoins = net.sent((f) => f.type === 'join' && f.room === room && f.since !== undefined);
  assert.equal(rejoins.length, 1, JSON.stringify(rejoins));
  assert.equal(rejoins[0].since, start.offset + 2);
  assert.equal(rejoins[0].epoch, start.epoch);
  const live = next(a, 'message', (m) => m.data === 'live 3');
  await b.publish(room, 'live 3');
  await live;

  assert.deepEqual(got.messages.map((m) => m.data), ['live 1', 'live 2', ...missed, 'live 3']);
  assert.deepEqual(got.messages.map((m) => m.offset), [1, 2, 3, 4, 5, 6, 7, 8].map((i) => start.offset + i));
  assert.equal(new Set(got.messages.map((m) => m.id)).size, got.messages.length, 'a message id twice');
  assert.deepEqual(got.resets, []);
  assert.deepEqual(a.position(room), { offset: start.offset + 8, epoch: start.epoch });

  // A position saved elsewhere (say before a page reload) resumes the same
  // way through join(room, {since, epoch}).
  const c = client('n-hist-c');
  const gotC = collect(c, room);
  await opened(c);
  await c.join(room, { since: start.offset + 6, epoch: start.epoch });
  assert.deepEqual(gotC.messages.map((m) => m.data), ['api 3', 'live 3']);
  assert.deepEqual(gotC.messages, got.messages.slice(6));
  assert.deepEqual(gotC.resets, []);
  assert.deepEqual(c.position(room), { offset: start.offset + 8, epoch: start.epoch });
});

test('a message delivered already is dropped; one from a restarted stream is not', async () => {
  const room = 'h:dedupe';
  const net = cuttableNetwork();
  const a = client('n-dedupe', { WebSocket: net.WebSocket, backoffCap: 1000 });
  const got = collect(a, room);
  await opened(a);
  await a.join(room);
  const second = next(a, 'message', (m) => m.data === 'two');
  await apiPublish(room, 'one');
  const p2 = await apiPublish(room, 'two');
  const m2 = await second;
  const { epoch } = a.position(room);
  assert.deepEqual(a.position(room), { offset: p2.offset, epoch: p2.epoch });

  // Frames as they would come off the wire (ws hands them to onmessage).
  const inject = (frame) => a.ws.emit('message', Buffer.from(JSON.stringify(frame)), false);
  inject(m2); // the same message again
  assert.deepEqual(got.messages.map((m) => m.data), ['one', 'two']);
  // A new message at an old offset: the stream started again (its offsets
  // restart, its ids are new). It is let through; its epoch is unknown, so
  // the next resume ends in reset.
  inject({ ...m2, id: 'n-dedupe-restarted', data: 'restarted', offset: 1 });
  assert.deepEqual(got.messages.map((m) => m.data), ['one', 'two', 'restarted']);
  assert.deepEqual(a.position(room), { offset: 1, epoch: null });
  inject(m2); // above the new offset, but delivered already
  assert.deepEqual(got.messages.map((m) => m.data), ['one', 'two', 'restarted']);

  const reset = next(a, 'reset', (r) => r.room === room, 10000);
  a.ws.terminate();
  assert.deepEqual(await reset, { room, offset: p2.offset, epoch });
  assert.deepEqual(a.position(room), { offset: p2.offset, epoch });
  const rejoins = net.sent((f) => f.type === 'join' && f.since !== undefined);
  assert.deepEqual(rejoins.map((f) => [f.since, f.epoch]), [[1, undefined]]);
  assert.deepEqual(got.messages.map((m) => m.data), ['one', 'two', 'restarted']);
});

test('after a restart of the server (memory history) the resume ends in reset with the new epoch', async () => {
  const room = 'h:reset';
  const net = cuttableNetwork();
  const a = client('n-hist-reset', { WebSocket: net.WebSocket, backoffCap: 1000 });
  const got = collect(a, room);
  await opened(a);
  await a.join(room);
  const third = next(a, 'message', (m) => m.data === 'old 3');
  for (const text of ['old 1', 'old 2', 'old 3']) await apiPublish(room, text);
  await third;
  const before = a.position(room);
  assert.equal(before.offset, 3);

  const closed = next(a, 'close', undefined, 10000);
  net.cut(); // keeps the client away until the new server has a message
  await control('restart');
  await closed;
  const p1 = await apiPublish(room, 'new 1');
  assert.equal(p1.offset, 1);
  assert.notEqual(p1.epoch, before.epoch);

  const reset = next(a, 'reset', (r) => r.room === room, 15000);
  net.restore();
  assert.deepEqual(await reset, { room, offset: 1, epoch: p1.epoch });
  assert.deepEqual(a.position(room), { offset: 1, epoch: p1.epoch });
  // Counting starts again in the new epoch: offset 2 is below the old
  // epoch's 3 and still delivered.
  const live = next(a, 'message', (m) => m.data === 'new 2');
  const p2 = await apiPublish(room, 'new 2');
  assert.equal((await live).offset, p2.offset);
  assert.equal(p2.offset, 2);
  assert.deepEqual(got.messages.map((m) => m.data), ['old 1', 'old 2', 'old 3', 'new 2']);
  assert.equal(got.resets.length, 1);
});
