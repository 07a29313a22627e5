// permessage-deflate against the npm package ws, an implementation
// independent of this project (its compression is Node's zlib). Run by
// e2e/deflate_test.go (TestDeflateWithNodeWS), which starts the server with
// --compression --max-message-bytes 262144 --rate 100000 --burst 100000
// --ping-interval 1h and passes SWITCHBOARD_URL (ws://host:port).
//
// It reproduces the case matrix of Autobahn|Testsuite's sections 12 and 13
// (autobahntestsuite/case/case12_x_x.py); it is not Autobahn itself:
//  - section 12: five corpora (German prose, a bitmap, a PDF-like binary,
//    JSON, HTML) each sent as messages of 16 B to 128 KiB, whole and
//    fragmented by the client into 256 B to 32 KiB frames, with the
//    default offer;
//  - section 13: the JSON corpus with each client offer of cases 13.1 to
//    13.6 (client_no_context_takeover, server_no_context_takeover,
//    server_max_window_bits 8 and 15); 13.7 offers three of them at once,
//    which ws cannot send: the server picks the first, 13.5's, as
//    wsframe's TestNegotiateDeflate checks, so 13.5's run covers its
//    traffic. Two more offers: ws's own default (context takeover, which
//    the server turns down) and client_max_window_bits=9.
// The server's protocol is JSON text, so each payload travels as the data
// string of a publish and comes back inside a message frame; binary
// corpora go base64-encoded. Autobahn sends 1000 messages per case; to
// fit a shared CI machine this sends 1000*scale for sizes up to 1 KiB, a
// fifth of that up to 16 KiB and a twenty-fifth above (at least 3), with
// scale DEFLATE_COUNT_SCALE (default 0.1; at 1: 1000, 200 and 40).
// DEFLATE_FULL=1 sends Autobahn's 1000 of every size (about 11 GB through
// the server and back: hours).
//
// A TCP tap between ws and the server parses every frame both ways, so
// the test sees RSV1 on the wire: each message the client sends is
// compressed (ws threshold 0), and each echo of at least the server's
// 256-byte threshold comes back compressed.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Tap } from './tap.mjs';

const TARGET = new URL(process.env.SWITCHBOARD_URL);
const SCALE = Number(process.env.DEFLATE_COUNT_SCALE || '0.1');
const SERVER_THRESHOLD = 256;

// Autobahn's MSG_SIZES: (payload length, messages, client fragment size).
const MSG_SIZES = [
  [16, 1000, 0], [64, 1000, 0], [256, 1000, 0], [1024, 1000, 0], [4096, 1000, 0],
  [8192, 1000, 0], [16384, 1000, 0], [32768, 1000, 0], [65536, 1000, 0], [131072, 1000, 0],
  [8192, 1000, 256], [16384, 1000, 256], [32768, 1000, 256], [65536, 1000, 256], [131072, 1000, 256],
  [131072, 1000, 1024], [131072, 1000, 4096], [131072, 1000, 32768],
];

function count(len, n) {
  if (process.env.DEFLATE_FULL === '1') return n;
  const scaled = n * SCALE;
  if (len <= 1024) return Math.max(3, Math.round(scaled));
  if (len <= 16384) return Math.max(3, Math.round(scaled / 5));
  return Math.max(3, Math.round(scaled / 25));
}

// A small deterministic PRNG, so every run sends the same bytes.
function rng(seed) {
  let x = seed >>> 0;
  return () => { x = (Math.imul(x, 1664525) + 1013904223) >>> 0; return x / 2 ** 32; };
}

const CORPUS_BYTES = 300 * 1024;

function prose() {
  const r = rng(1);
  const words = ['Habe', 'nun', 'ach', 'Philosophie', 'Juristerei', 'und', 'Medizin', 'leider', 'auch',
    'Theologie', 'durchaus', 'studiert', 'mit', 'heißem', 'Bemühn', 'Da', 'steh', 'ich', 'armer', 'Tor',
    'bin', 'so', 'klug', 'als', 'wie', 'zuvor', 'Fräulein', 'Mädchen', 'Grüße', 'über'];
  let s = '';
  while (Buffer.byteLength(s) < CORPUS_BYTES) {
    s += words[Math.floor(r() * words.length)] + (r() < 0.1 ? '.\n' : ' ');
  }
  return { binary: false, data: Buffer.from(s) };
}

function bitmap() {
  const r = rng(2);
  const b = Buffer.alloc(CORPUS_BYTES);
  for (let i = 0; i < b.length; i++) {
    const x = i % 512, y = Math.floor(i / 512);
    b[i] = (128 + 60 * Math.sin(x / 40) * Math.cos(y / 30) + r() * 16) & 0xff;
  }
  return { binary: true, data: b };
}

function pdfLike() {
  const r = rng(3);
  const parts = [];
  let n = 0;
  while (n < CORPUS_BYTES) {
    let p;
    if (r() < 0.5) {
      p = Buffer.from(`${n} 0 obj << /Type /Page /Parent 3 0 R /Contents ${n + 1} 0 R >> endobj\n`);
    } else {
      p = Buffer.alloc(200 + Math.floor(r() * 800));
      for (let i = 0; i < p.length; i++) p[i] = Math.floor(r() * 256);
    }
    parts.push(p);
    n += p.length;
  }
  // Half its bytes have no repeats at all: the server may send such
  // messages uncompressed (deflate finds nothing to gain).
  return { binary: true, incompressible: true, data: Buffer.concat(parts).subarray(0, CORPUS_BYTES) };
}

function jsonData() {
  const r = rng(4);
  const rows = [];
  let n = 0;
  for (let i = 0; n < CORPUS_BYTES; i++) {
    const row = JSON.stringify({ id: i, name: `user-${Math.floor(r() * 5000)}`, active: r() < 0.7,
      score: Math.round(r() * 10000) / 100, tags: ['alpha', 'beta', 'gamma'].slice(0, 1 + (i % 3)),
      address: { city: ['Berlin', 'Paris', 'Lisbon', 'Oslo'][i % 4], zip: String(10000 + Math.floor(r() * 89999)) } });
    rows.push(row);
    n += row.length + 1;
  }
  return { binary: false, data: Buffer.from('[' + rows.join(',') + ']') };
}

function html() {
  const r = rng(5);
  let s = '<!DOCTYPE html><html><head><title>Report</title></head><body>\n';
  for (let i = 0; s.length < CORPUS_BYTES; i++) {
    s += `<div class="row ${i % 2 ? 'odd' : 'even'}"><a href="/item/${i}">Item ${i}</a>` +
      `<span class="price">${(r() * 100).toFixed(2)}</span><p>Lorem ipsum dolor sit amet ${i}.</p></div>\n`;
  }
  return { binary: false, data: Buffer.from(s) };
}

const CORPORA = { prose: prose(), bitmap: bitmap(), pdf: pdfLike(), json: jsonData(), html: html() };

// The Autobahn default offer, and the offers of cases 13.1-13.6, as ws
// options; offer is the header the ws options produce.
const AUTOBAHN_DEFAULT = { clientNoContextTakeover: true, clientMaxWindowBits: true };
const OFFERS = [
  ['13.1', AUTOBAHN_DEFAULT, 15],
  ['13.2', { ...AUTOBAHN_DEFAULT, serverNoContextTakeover: true }, 15],
  ['13.3', { ...AUTOBAHN_DEFAULT, serverMaxWindowBits: 8 }, 8],
  ['13.4', { ...AUTOBAHN_DEFAULT, serverMaxWindowBits: 15 }, 15],
  ['13.5 (and 13.7)', { ...AUTOBAHN_DEFAULT, serverNoContextTakeover: true, serverMaxWindowBits: 8 }, 8],
  ['13.6', { ...AUTOBAHN_DEFAULT, serverNoContextTakeover: true, serverMaxWindowBits: 15 }, 15],
  ['ws default (client context takeover offered)', {}, 15],
  ['client_max_window_bits=9', { clientMaxWindowBits: 9 }, 15],
];

let tap, tapURL;
before(async () => { tap = new Tap(TARGET); tapURL = `ws://127.0.0.1:${await tap.listen()}/ws`; });
after(async () => { await tap?.close(); });

let userSeq = 0;

// open connects with the ws options, checks the answer, and returns a
// connection with a queue of decoded server frames.
async function open(pmd, wantBits) {
  const ws = new WebSocket(`${tapURL}?user=pmd${++userSeq}`, {
    perMessageDeflate: { ...pmd, threshold: 0 }, maxPayload: 1 << 20,
  });
  let answer;
  ws.on('upgrade', (res) => { answer = res.headers['sec-websocket-extensions']; });
  const frames = [];
  let waiter = null;
  ws.on('message', (data) => {
    const f = JSON.parse(data.toString());
    if (f.type === 'ping') { ws.send('{"type":"pong"}'); return; }
    frames.push({ f, wire: tap.lastServerData });
    if (waiter) { const w = waiter; waiter = null; w(); }
  });
  await new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); });
  assert.match(answer, /^permessage-deflate; server_no_context_takeover; client_no_context_takeover/);
  if (pmd.serverMaxWindowBits) assert.match(answer, new RegExp(`server_max_window_bits=${pmd.serverMaxWindowBits}$`));
  const params = ws._extensions['permessage-deflate'].params;
  assert.equal(params.client_no_context_takeover, true, 'ws must honour client_no_context_takeover');
  assert.equal(params.server_max_window_bits ?? 15, wantBits);
  const next = async (type) => {
    const deadline = Date.now() + 20000;
    for (;;) {
      const i = frames.findIndex((x) => x.f.type === type);
      if (i >= 0) return frames.splice(i, 1)[0];
      assert.ok(Date.now() < deadline, `no ${type} frame within 20s`);
      await new Promise((res) => { waiter = res; setTimeout(res, 1000); });
    }
  };
  return { ws, next };
}

function sendFragmented(ws, text, size) {
  const b = Buffer.from(text);
  return new Promise((res, rej) => {
    for (let i = 0; i < b.length; i += size) {
      const last = i + size >= b.length;
      ws.send(b.subarray(i, i + size), { binary: false, fin: last, compress: true }, last ? (e) => (e ? rej(e) : res()) : undefined);
    }
  });
}

// runCase sends the messages of one Autobahn case and checks each echo.
async function runCase(conn, room, corpus, len, n, fragment) {
  const { ws, next } = conn;
  let ptr = 0;
  const sentBefore = tap.clientFrames.length;
  for (let i = 0; i < n; i++) {
    let slice = corpus.data.subarray(ptr, ptr + len);
    if (slice.length < len) slice = Buffer.concat([slice, corpus.data.subarray(0, len - slice.length)]);
    ptr = (ptr + len) % corpus.data.length;
    const data = corpus.binary ? slice.toString('base64') : slice.toString();
    const text = JSON.stringify({ type: 'publish', room, data });
    if (fragment > 0) await sendFragmented(ws, text, fragment);
    else ws.send(text, { compress: true });
    const { f, wire } = await next('message');
    assert.equal(f.data, data, `message ${i} of ${len} bytes came back changed`);
    const wantCompressed = Buffer.byteLength(JSON.stringify(f)) >= SERVER_THRESHOLD + 200;
    if (wantCompressed && !corpus.incompressible) assert.ok(wire.rsv1, `message ${i} (${len} bytes) came back uncompressed`);
    if (Buffer.byteLength(JSON.stringify(f)) < SERVER_THRESHOLD - 50) assert.ok(!wire.rsv1, 'a message under the threshold came back compressed');
    assert.equal(wire.rsv23, 0);
  }
  const sent = tap.clientFrames.slice(sentBefore);
  assert.equal(sent.filter((f) => f.op !== 0).length, n, 'client messages seen on the wire');
  assert.ok(sent.filter((f) => f.op !== 0).every((f) => f.rsv1), 'ws sent a data message uncompressed');
  assert.ok(sent.filter((f) => f.op === 0).every((f) => !f.rsv1), 'RSV1 on a continuation frame');
}

async function joined(pmd, bits, room) {
  const conn = await open(pmd, bits);
  conn.ws.send(JSON.stringify({ type: 'join', room, id: 'j' }));
  assert.equal((await conn.next('ack')).f.ref, 'j');
  return conn;
}

for (const [name, corpus] of Object.entries(CORPORA)) {
  test(`12.x ${name}: every size, whole and fragmented, default Autobahn offer`, async () => {
    const conn = await joined(AUTOBAHN_DEFAULT, 15, `r12-${name}`);
    try {
      for (const [len, n, frag] of MSG_SIZES) {
        await runCase(conn, `r12-${name}`, corpus, len, count(len, n), frag);
      }
    } finally {
      conn.ws.terminate();
    }
  });
}

for (const [name, pmd, bits] of OFFERS) {
  test(`13.x ${name}: JSON corpus, every size`, async () => {
    const room = `r13-${name.replace(/\W+/g, '-')}`;
    const conn = await joined(pmd, bits, room);
    try {
      for (const [len, n, frag] of MSG_SIZES) {
        await runCase(conn, room, CORPORA.json, len, count(len, n), frag);
      }
    } finally {
      conn.ws.terminate();
    }
  });
}

test('compressed frames were seen on the wire', () => {
  assert.ok(tap.serverRSV1 > 100, `only ${tap.serverRSV1} compressed server frames`);
});
