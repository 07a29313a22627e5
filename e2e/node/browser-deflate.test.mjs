// permessage-deflate with a real browser: Debian's chromium driven by
// playwright-core, its own WebSocket implementation, against the real
// binary started by e2e/browser_test.go (TestBrowserCompression) with
// --auth none --compression --allowed-origins 127.0.0.1. It passes:
//   SWITCHBOARD_URL  ws://host:port (the page is at http://host:port/)
//   CHROMIUM         the browser executable (default /usr/bin/chromium)
// The page's socket goes through a tap (tap.mjs) that sees RSV1 on the
// wire both ways; a node ws client without compression shares the room.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';
import { Tap } from './tap.mjs';

const TARGET = new URL(process.env.SWITCHBOARD_URL);
const PAGE = process.env.SWITCHBOARD_URL.replace(/^ws/, 'http') + '/';
const ACCEPTED = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';

let browser, tap, tapURL;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  tap = new Tap(TARGET);
  tapURL = `ws://127.0.0.1:${await tap.listen()}/ws`;
});
after(async () => {
  await browser?.close();
  await tap?.close();
});

// A plain node ws client (no compression) in the same room.
async function plainPeer(room) {
  const ws = new WebSocket(`${process.env.SWITCHBOARD_URL}/ws?user=node`, { perMessageDeflate: false });
  const frames = [];
  ws.on('message', (d) => frames.push(JSON.parse(d.toString())));
  await new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); });
  ws.send(JSON.stringify({ type: 'join', room, id: 'j' }));
  const next = async (pred) => {
    const deadline = Date.now() + 8000;
    for (;;) {
      const i = frames.findIndex(pred);
      if (i >= 0) return frames.splice(i, 1)[0];
      assert.ok(Date.now() < deadline, 'node peer: frame not received in time');
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await next((f) => f.type === 'ack' && f.ref === 'j');
  return { ws, next };
}

test('chromium negotiates permessage-deflate and exchanges compressed messages both ways', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const handshakes = [];
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => handshakes.push(e.response));
  await page.goto(PAGE); // an origin of the server's host, which it allows

  const peer = await plainPeer('deflate');
  const long = Array.from({ length: 120 }, (_, i) => `line ${i}: service healthy, latency ${i % 17} ms`).join('\n');

  // The page opens its own socket through the tap, joins, and publishes a
  // short message and one above the server's 256-byte threshold.
  const result = await page.evaluate(async ({ url, long }) => {
    const ws = new WebSocket(url + '?user=browser');
    const got = [];
    let wake = null;
    ws.onmessage = (e) => { got.push(JSON.parse(e.data)); if (wake) wake(); };
    await new Promise((res, rej) => { ws.onopen = res; ws.onerror = () => rej(new Error('socket error')); });
    const next = async (pred) => {
      const deadline = Date.now() + 8000;
      for (;;) {
        const i = got.findIndex(pred);
        if (i >= 0) return got.splice(i, 1)[0];
        if (Date.now() > deadline) throw new Error('page: frame not received in time');
        await new Promise((r) => { wake = r; setTimeout(r, 200); });
      }
    };
    ws.send(JSON.stringify({ type: 'join', room: 'deflate', id: 'j' }));
    await next((f) => f.type === 'ack' && f.ref === 'j');
    ws.send(JSON.stringify({ type: 'publish', room: 'deflate', data: 'short' }));
    const short = await next((f) => f.type === 'message' && f.data === 'short');
    ws.send(JSON.stringify({ type: 'publish', room: 'deflate', data: long }));
    const own = await next((f) => f.type === 'message' && f.from === 'browser' && f.data.length > 1000);
    window.__next = next;
    window.__ws = ws;
    return { extensions: ws.extensions, short: short.data, own: own.data };
  }, { url: tapURL, long });

  assert.equal(result.extensions, ACCEPTED, 'ws.extensions in the page');
  assert.equal(result.short, 'short');
  assert.equal(result.own, long);
  const hs = handshakes.find((r) => String(r.status) === '101');
  assert.ok(hs, 'no handshake seen over CDP');
  const hdr = Object.fromEntries(Object.entries(hs.headers).map(([k, v]) => [k.toLowerCase(), v]));
  assert.equal(hdr['sec-websocket-extensions'], ACCEPTED);
  const offered = Object.fromEntries(Object.entries(hs.requestHeaders || {}).map(([k, v]) => [k.toLowerCase(), v]));
  if (offered['sec-websocket-extensions']) assert.match(offered['sec-websocket-extensions'], /permessage-deflate/);

  // The plain peer got the browser's long message uncompressed and intact.
  assert.equal((await peer.next((f) => f.type === 'message' && f.from === 'browser' && f.data.length > 1000)).data, long);

  // Server to browser: a long message from the peer arrives compressed.
  const before = tap.serverRSV1;
  const fromPeer = long.toUpperCase();
  peer.ws.send(JSON.stringify({ type: 'publish', room: 'deflate', data: fromPeer }));
  const received = await page.evaluate(async () => (await window.__next((f) => f.type === 'message' && f.from === 'node')).data);
  assert.equal(received, fromPeer);
  assert.ok(tap.serverRSV1 > before, 'the long message reached the browser uncompressed');

  // On the wire: chromium compressed what it sent (RSV1 on its data
  // frames), and the server compressed the long echoes but not the short.
  const sent = tap.clientFrames;
  assert.ok(sent.length >= 3 && sent.every((f) => f.rsv1), `browser frames ${JSON.stringify(sent)}`);
  assert.ok(tap.serverRSV1 >= 2, `${tap.serverRSV1} compressed server frames`);
  assert.deepEqual(errors, []);
  peer.ws.terminate();
  await page.evaluate(() => window.__ws.close(1000));
  await context.close();
});
