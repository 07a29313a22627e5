// Tests of the page's JavaScript client, web/static/switchboard.js, in Node
// with the npm package ws as its WebSocket, against the real server binary.
// Run by e2e/nodeclient_test.go (TestNodeClient), which starts the server
// with --auth none --ping-interval 1s --pong-timeout 1s
// --max-conns-per-user 1 --per-user-policy evict-oldest --api-key KEY and
// passes:
//   SWITCHBOARD_URL      ws://host:port
//   SWITCHBOARD_CONTROL  http://host:port of the control endpoint
//                        (POST /stop /start /restart /sigstop /sigcont)
//   SWITCHBOARD_API_KEY  the backend API key (for /api/disconnect)
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
  assert.deepEqual(await a.join('n-echo-room', { echo: false, since: 0, epoch: 'e0' }), ['n-echo']);
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
    await control('sigcont');
    stopped = false;
    const rejoined = next(a, 'presence', (p) => p.room === 'n-silent-room', 20000);
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
  assert.deepEqual(a.closes.at(-1), { code: 1000, reason: 'bye' });
  await assert.rejects(a.publish('r', 1), (e) => e.code === 'closed');
  await sleep(800);
  assert.equal(a.state, 'closed');
});
