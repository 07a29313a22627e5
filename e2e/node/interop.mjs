// Interop check: drives a running Switchboard server with the independent
// `ws` client (npm) and checks the wire contract in /work/shared/PROTOCOL.md.
//
//   node interop.mjs ws://127.0.0.1:PORT
//
// The server must run with dev auth (--auth=none, identity from ?user=),
// --ping-interval 1s --pong-timeout 1s --max-message-bytes 1024. Other values
// can be given with EXPECT_PING_INTERVAL, EXPECT_PONG_TIMEOUT and
// EXPECT_MAX_MESSAGE_BYTES.
//
// Every check prints "ok - ..." or "FAIL - ...", the last line is
// "N passed, M failed", and the exit code is 0 only when nothing failed.
// A step that cannot go on (a frame that never comes) fails and ends the run.

import { WebSocket } from 'ws';

const base = process.argv[2];
if (!base || !/^wss?:\/\//.test(base)) {
  console.error('usage: node interop.mjs ws://HOST:PORT');
  process.exit(2);
}
const EXPECT = {
  ping_interval: Number(process.env.EXPECT_PING_INTERVAL ?? 1),
  pong_timeout: Number(process.env.EXPECT_PONG_TIMEOUT ?? 1),
  max_message_bytes: Number(process.env.EXPECT_MAX_MESSAGE_BYTES ?? 1024),
};
const STEP_TIMEOUT_MS = 5000;
const TOTAL_TIMEOUT_MS = Number(process.env.INTEROP_TIMEOUT_MS ?? 45000);
const SUBPROTOCOL = 'switchboard.v1';
const ROOM = 'interop:lobby';

let passed = 0;
let failed = 0;
const clients = [];

function summaryAndExit(code) {
  for (const c of clients) c.ws.terminate();
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(code);
}

function check(name, cond, detail = '') {
  if (cond) {
    passed++;
    console.log(`ok - ${name}`);
  } else {
    failed++;
    console.log(`FAIL - ${name}${detail ? ': ' + detail : ''}`);
  }
  return cond;
}

function eq(name, got, want) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  return check(name, g === w, `got ${g}, want ${w}`);
}

class Fatal extends Error {}

const watchdog = setTimeout(() => {
  failed++;
  console.log(`FAIL - whole run: not finished within ${TOTAL_TIMEOUT_MS} ms`);
  summaryAndExit(1);
}, TOTAL_TIMEOUT_MS);
watchdog.unref();

// Client wraps one `ws` connection: every text frame is kept with its raw
// text, in arrival order; waiters are woken by arrivals, never by timers
// (a timer only ends a wait that failed).
class Client {
  constructor(label, user, { protocols, autoPong = true } = {}) {
    this.label = label;
    this.user = user;
    this.autoPong = autoPong;
    this.frames = []; // {raw, msg, at}
    this.waiters = new Set();
    this.pings = 0;
    this.closed = null; // {code, reason}
    this.url = `${base}/ws?user=${encodeURIComponent(user)}`;
    this.ws = protocols ? new WebSocket(this.url, protocols) : new WebSocket(this.url);
    clients.push(this);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', (err) => reject(new Fatal(`${label}: connect failed: ${err.message}`)));
      this.ws.once('unexpected-response', (req, res) =>
        reject(new Fatal(`${label}: handshake answered HTTP ${res.statusCode}`)));
    });
    this.opened.catch(() => {});
    this.ws.on('error', () => {}); // reported through opened / close
    this.ws.on('message', (data, isBinary) => {
      const raw = data.toString('utf8');
      let msg;
      try {
        msg = JSON.parse(raw);
      } catch {
        msg = { type: '<not json>' };
      }
      if (isBinary) msg = { type: '<binary>' };
      if (msg.type === 'ping') {
        this.pings++;
        if (this.autoPong) this.send({ type: 'pong' });
      }
      this.frames.push({ raw, msg, at: Date.now() });
      this.wake();
    });
    this.ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString('utf8') };
      this.wake();
    });
  }

  wake() {
    for (const w of [...this.waiters]) w();
  }

  send(obj) {
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  }

  // waitFor resolves with the first frame at index >= from that matches.
  waitFor(desc, pred, { from = 0, timeout = STEP_TIMEOUT_MS } = {}) {
    return new Promise((resolve, reject) => {
      let timer;
      const tryNow = () => {
        for (let i = from; i < this.frames.length; i++) {
          if (pred(this.frames[i].msg, this.frames[i].raw)) {
            done();
            resolve({ ...this.frames[i], index: i });
            return;
          }
        }
        if (this.closed) {
          done();
          reject(new Fatal(`${this.label}: closed (${this.closed.code} ${this.closed.reason}) while waiting for ${desc}`));
        }
      };
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(tryNow);
      };
      timer = setTimeout(() => {
        done();
        const seen = this.frames.slice(from).map((f) => f.raw).slice(-8).join(' | ');
        reject(new Fatal(`${this.label}: no ${desc} within ${timeout} ms (last frames: ${seen || 'none'})`));
      }, timeout);
      this.waiters.add(tryNow);
      tryNow();
    });
  }

  waitClose(desc, timeout = STEP_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      let timer;
      const tryNow = () => {
        if (this.closed) {
          clearTimeout(timer);
          this.waiters.delete(tryNow);
          resolve(this.closed);
        }
      };
      timer = setTimeout(() => {
        this.waiters.delete(tryNow);
        reject(new Fatal(`${this.label}: not closed within ${timeout} ms (${desc})`));
      }, timeout);
      this.waiters.add(tryNow);
      tryNow();
    });
  }

  // request sends a frame with an id and waits for the ack or error with that ref.
  async request(obj) {
    const from = this.frames.length;
    this.send(obj);
    return this.waitFor(`ack/error ref=${obj.id}`, (m) => (m.type === 'ack' || m.type === 'error') && m.ref === obj.id, { from });
  }

  count(pred, from = 0) {
    return this.frames.slice(from).filter((f) => pred(f.msg, f.raw)).length;
  }
}

const isJoin = (user) => (m) => m.type === 'join' && m.room === ROOM && m.user === user;
const isLeave = (user) => (m) => m.type === 'leave' && m.room === ROOM && m.user === user;

function checkWelcome(c, welcome) {
  const m = welcome.msg;
  eq(`${c.label}: welcome is the first frame`, welcome.index, 0);
  check(`${c.label}: welcome.conn is a non-empty string`, typeof m.conn === 'string' && m.conn.length > 0, `got ${JSON.stringify(m.conn)}`);
  eq(`${c.label}: welcome.user`, m.user, c.user);
  eq(`${c.label}: welcome.ping_interval`, m.ping_interval, EXPECT.ping_interval);
  eq(`${c.label}: welcome.pong_timeout`, m.pong_timeout, EXPECT.pong_timeout);
  eq(`${c.label}: welcome.max_message_bytes`, m.max_message_bytes, EXPECT.max_message_bytes);
}

// rawData pulls the exact text of the top-level "data" value out of a frame,
// without parsing it as numbers (which would round 12345678901234567890).
function rawData(raw) {
  const key = raw.indexOf('"data":');
  if (key < 0) return null;
  let i = key + 7;
  while (raw[i] === ' ') i++;
  const start = i;
  let depth = 0;
  let inStr = false;
  for (; i < raw.length; i++) {
    const ch = raw[i];
    if (inStr) {
      if (ch === '\\') i++;
      else if (ch === '"') inStr = false;
      continue;
    }
    if (ch === '"') inStr = true;
    else if (ch === '{' || ch === '[') depth++;
    else if (ch === '}' || ch === ']') {
      if (depth === 0) break;
      depth--;
      if (depth === 0) { i++; break; }
    } else if (ch === ',' && depth === 0) break;
  }
  return raw.slice(start, i);
}

function checkMessage(label, frame, want) {
  const m = frame.msg;
  eq(`${label}: type`, m.type, 'message');
  for (const k of ['room', 'to', 'from']) {
    if (k in want) eq(`${label}: ${k}`, m[k], want[k]);
  }
  check(`${label}: id is a non-empty string`, typeof m.id === 'string' && m.id.length > 0, `got ${JSON.stringify(m.id)}`);
  check(`${label}: ts is unix ms near now`, Number.isInteger(m.ts) && Math.abs(m.ts - Date.now()) < 60000, `got ${JSON.stringify(m.ts)}`);
  eq(`${label}: data is byte-exact`, rawData(frame.raw), want.dataRaw);
}

async function main() {
  // --- connect, subprotocol, welcome ---------------------------------------
  const a1 = new Client('alice#1', 'alice', { protocols: [SUBPROTOCOL] });
  const a2 = new Client('alice#2', 'alice'); // offers no subprotocol
  const bob = new Client('bob', 'bob', { protocols: [SUBPROTOCOL] });
  const carol = new Client('carol', 'carol', { protocols: [SUBPROTOCOL] });
  await Promise.all([a1.opened, a2.opened, bob.opened, carol.opened]);
  eq('alice#1: subprotocol switchboard.v1 negotiated when offered', a1.ws.protocol, SUBPROTOCOL);
  eq('alice#2: no subprotocol when none offered', a2.ws.protocol, '');
  const welcomes = await Promise.all([a1, a2, bob, carol].map((c) => c.waitFor('welcome', (m) => m.type === 'welcome')));
  [a1, a2, bob, carol].forEach((c, i) => checkWelcome(c, welcomes[i]));
  check('welcome.conn differs between alice\'s two devices', welcomes[0].msg.conn !== welcomes[1].msg.conn,
    `both ${welcomes[0].msg.conn}`);
  const connectedAt = Date.now();

  // --- join, presence snapshot, announcement ---------------------------------
  // bob first, then alice: the snapshot must come sorted, not in join order.
  let r = await bob.request({ type: 'join', id: 'j-bob', room: ROOM });
  eq('bob: join acked', r.msg.type, 'ack');
  eq('bob: join ack users snapshot', r.msg.users, ['bob']);

  r = await a1.request({ type: 'join', id: 'j-a1', room: ROOM, echo: false });
  eq('alice#1: join (echo:false) acked', r.msg.type, 'ack');
  eq('alice#1: join ack users snapshot sorted', r.msg.users, ['alice', 'bob']);
  const a1AfterOwnJoin = r.index + 1;
  await bob.waitFor('join of alice', isJoin('alice'));
  check('bob: alice\'s join announced', true);

  r = await a2.request({ type: 'join', id: 'j-a2', room: ROOM });
  eq('alice#2: join acked', r.msg.type, 'ack');
  eq('alice#2: join ack users snapshot (alice once)', r.msg.users, ['alice', 'bob']);

  // carol's join is the barrier: whatever alice#2's join announced is queued before it.
  r = await carol.request({ type: 'join', id: 'j-carol', room: ROOM });
  eq('carol: join ack users snapshot sorted', r.msg.users, ['alice', 'bob', 'carol']);
  await bob.waitFor('join of carol', isJoin('carol'));
  await a1.waitFor('join of carol', isJoin('carol'));
  eq('bob: alice announced once although she joined from two devices', bob.count(isJoin('alice')), 1);
  eq('alice#1: her second device\'s join is silent', a1.count(isJoin('alice'), a1AfterOwnJoin), 0);

  // --- publish: delivery, byte-exact data, echo:false -------------------------
  const dataRaw = '{"n":12345678901234567890,"neg":-0.000001e-300,"s":"h\\u00e9llo \\"q\\" ✓","a":[1,true,null,{}]}';
  const marks = { a1: a1.frames.length, a2: a2.frames.length, bob: bob.frames.length, carol: carol.frames.length };
  a1.send(`{"type":"publish","id":"p1","room":"${ROOM}","data":${dataRaw}}`);
  const isP1 = (m, raw) => m.type === 'message' && m.room === ROOM && m.from === 'alice' && raw.includes('12345678901234567890');
  const [p1ack, p1a2, p1bob, p1carol] = await Promise.all([
    a1.waitFor('ack p1', (m) => m.ref === 'p1', { from: marks.a1 }),
    a2.waitFor('message p1', isP1, { from: marks.a2 }),
    bob.waitFor('message p1', isP1, { from: marks.bob }),
    carol.waitFor('message p1', isP1, { from: marks.carol }),
  ]);
  eq('alice#1: publish acked', p1ack.msg.type, 'ack');
  checkMessage('alice#2 (sender\'s other device) gets publish', p1a2, { room: ROOM, from: 'alice', dataRaw });
  checkMessage('bob gets publish', p1bob, { room: ROOM, from: 'alice', dataRaw });
  checkMessage('carol gets publish', p1carol, { room: ROOM, from: 'alice', dataRaw });
  check('publish: same message id for every recipient', p1a2.msg.id === p1bob.msg.id && p1bob.msg.id === p1carol.msg.id,
    `${p1a2.msg.id} ${p1bob.msg.id} ${p1carol.msg.id}`);

  // bob publishes after receiving p1: alice#1 gets bob's message, and must
  // not have had her own (echo:false) before it.
  bob.send({ type: 'publish', room: ROOM, data: { after: 'p1' } });
  await a1.waitFor('bob\'s message after p1', (m) => m.type === 'message' && m.from === 'bob', { from: marks.a1 });
  eq('alice#1 (echo:false) does not get her own publish', a1.count(isP1, marks.a1), 0);

  // alice#2 joined with the default echo: she gets her own publish.
  const a2mark = a2.frames.length;
  a2.send({ type: 'publish', id: 'p2', room: ROOM, data: 'from a2' });
  const own = await a2.waitFor('own message p2', (m) => m.type === 'message' && m.data === 'from a2', { from: a2mark });
  eq('alice#2 (echo default) gets her own publish', own.msg.from, 'alice');
  await a1.waitFor('alice#2\'s message on alice#1', (m) => m.type === 'message' && m.data === 'from a2');
  check('alice#1 gets the publish of alice#2', true);

  // --- send to a user: every device --------------------------------------
  const sendData = '{"dm":12345678901234567890}';
  const sm = { a1: a1.frames.length, a2: a2.frames.length, bob: bob.frames.length };
  bob.send(`{"type":"send","id":"s1","to":"alice","data":${sendData}}`);
  const isDM = (m) => m.type === 'message' && m.to === 'alice' && m.from === 'bob';
  const [s1ack, dm1, dm2] = await Promise.all([
    bob.waitFor('ack s1', (m) => m.ref === 's1', { from: sm.bob }),
    a1.waitFor('direct message', isDM, { from: sm.a1 }),
    a2.waitFor('direct message', isDM, { from: sm.a2 }),
  ]);
  eq('bob: send acked', s1ack.msg.type, 'ack');
  checkMessage('alice#1 gets send to alice', dm1, { to: 'alice', from: 'bob', dataRaw: sendData });
  checkMessage('alice#2 gets send to alice', dm2, { to: 'alice', from: 'bob', dataRaw: sendData });
  check('send: no room field on a direct message', !('room' in dm1.msg), dm1.raw);

  // --- presence ------------------------------------------------------------
  const pm = carol.frames.length;
  carol.send({ type: 'presence', room: ROOM });
  const pres = await carol.waitFor('presence', (m) => m.type === 'presence', { from: pm });
  eq('presence: room', pres.msg.room, ROOM);
  eq('presence: users sorted, alice once', pres.msg.users, ['alice', 'bob', 'carol']);

  // --- errors with ref; the connection stays open ------------------------
  let em = a1.frames.length;
  a1.send('{"type":"publish","id":"e0",');
  const bad = await a1.waitFor('error for bad JSON', (m) => m.type === 'error', { from: em });
  eq('bad JSON: error code bad_request', bad.msg.code, 'bad_request');
  check('bad JSON: error has a message', typeof bad.msg.message === 'string' && bad.msg.message.length > 0, bad.raw);

  // The id of a frame that is not JSON cannot be known, so no ref is
  // required there; a JSON frame that is not a valid request gets its ref.
  r = await a1.request({ type: 'publish', id: 'e1a', room: ROOM });
  eq('publish without data: error with ref', [r.msg.type, r.msg.ref, r.msg.code], ['error', 'e1a', 'bad_request']);
  r = await a1.request({ type: 'frobnicate', id: 'e1', room: ROOM });
  eq('unknown type: error with ref', [r.msg.type, r.msg.ref, r.msg.code], ['error', 'e1', 'bad_request']);
  r = await a1.request({ type: 'publish', id: 'e2', room: 'interop:elsewhere', data: 1 });
  eq('publish to a room not joined: not_joined with ref', [r.msg.type, r.msg.ref, r.msg.code], ['error', 'e2', 'not_joined']);
  r = await a1.request({ type: 'join', id: 'e3', room: 'user:bob' });
  eq('alice joins user:bob: forbidden with ref', [r.msg.type, r.msg.ref, r.msg.code], ['error', 'e3', 'forbidden']);
  r = await a1.request({ type: 'join', id: 'e4', room: 'user:alice' });
  eq('alice joins her own user:alice', r.msg.type, 'ack');
  r = await a1.request({ type: 'publish', id: 'e5', room: ROOM, data: 'still open' });
  eq('connection stays open after errors', r.msg.type, 'ack');

  // --- liveness: server pings answered with pong, survives several intervals --
  const survive = 4; // pings; at ~1 s each, well past ping_interval + pong_timeout
  await a1.waitFor(`${survive} server pings`, () => a1.pings >= survive, { timeout: (survive + 3) * 1000 * Math.max(1, EXPECT.ping_interval) });
  const pingFrame = a1.frames.find((f) => f.msg.type === 'ping');
  eq('server ping frame', pingFrame.msg, { type: 'ping' });
  const alive = Date.now() - connectedAt;
  check('connections answering pings survive several ping intervals',
    alive > (EXPECT.ping_interval + EXPECT.pong_timeout) * 1000 && !a1.closed && !bob.closed && !carol.closed && !a2.closed,
    `alive ${alive} ms, closed: ${JSON.stringify([a1.closed, a2.closed, bob.closed, carol.closed])}`);
  em = a1.frames.length;
  a1.send({ type: 'ping' });
  await a1.waitFor('pong for client ping', (m) => m.type === 'pong', { from: em });
  check('client ping answered with pong', true);

  // --- leave only when the last device goes; normal close 1000 -------------
  const lm = bob.frames.length;
  a1.ws.close(1000, 'bye');
  const c1 = await a1.waitClose('normal close');
  eq('alice#1: normal close completes with 1000', c1.code, 1000);
  a2.ws.close(1000, 'bye');
  const c2 = await a2.waitClose('normal close');
  eq('alice#2: normal close completes with 1000', c2.code, 1000);
  await bob.waitFor('leave of alice', isLeave('alice'), { from: lm });
  // barrier: carol's later publish reaches bob after any further leave.
  carol.send({ type: 'publish', room: ROOM, data: 'barrier' });
  await bob.waitFor('carol\'s barrier message', (m) => m.type === 'message' && m.data === 'barrier', { from: lm });
  eq('bob: alice\'s leave announced once, when her last device closed', bob.count(isLeave('alice'), lm), 1);
  const leave = bob.frames.slice(lm).find((f) => isLeave('alice')(f.msg));
  eq('leave frame', leave.msg, { type: 'leave', room: ROOM, user: 'alice' });

  // --- too big frame -> 1009 too_big ---------------------------------------
  const dave = new Client('dave', 'dave', { protocols: [SUBPROTOCOL] });
  await dave.opened;
  await dave.waitFor('welcome', (m) => m.type === 'welcome');
  const filler = 'x'.repeat(EXPECT.max_message_bytes + 100);
  dave.send(`{"type":"publish","room":"${ROOM}","data":"${filler}"}`);
  const big = await dave.waitClose('frame over max_message_bytes');
  eq('frame over max_message_bytes closes with 1009 too_big', [big.code, big.reason], [1009, 'too_big']);

  // the server is still fine for everybody else
  const fm = bob.frames.length;
  bob.send({ type: 'presence', room: ROOM });
  const pres2 = await bob.waitFor('presence', (m) => m.type === 'presence', { from: fm });
  eq('presence after alice left (and dave never joined)', pres2.msg.users, ['bob', 'carol']);

  bob.ws.close(1000);
  carol.ws.close(1000);
  await Promise.all([bob.waitClose('normal close'), carol.waitClose('normal close')]);
  eq('bob and carol close with 1000', [bob.closed.code, carol.closed.code], [1000, 1000]);
}

main().then(
  () => summaryAndExit(failed === 0 ? 0 : 1),
  (err) => {
    failed++;
    console.log(`FAIL - ${err instanceof Fatal ? err.message : err.stack}`);
    summaryAndExit(1);
  },
);
