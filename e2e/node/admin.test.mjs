// The admin dashboard (web/admin) in a real browser: Debian's chromium
// driven by playwright-core, while real WebSocket clients (npm ws) make
// the traffic it must show. Run by e2e/admin_browser_test.go
// (TestAdminDashboardInBrowser), which passes:
//   SWITCHBOARD_URL          http://host:port of a node started with --admin
//                            --admin-key KEY --rate 1000 --burst 1000
//                            --queue-bytes 65536 --write-timeout 1s
//   SWITCHBOARD_ADMIN_KEY    the admin key
//   SWITCHBOARD_NODE_A/_B    http://host:port of two nodes sharing a Redis,
//   SWITCHBOARD_NODE_A_ID/_B_ID  and their node ids
//   SWITCHBOARD_SCREENSHOTS  directory for screenshots (admin.png is the
//                            one in docs/)
//   CHROMIUM                 the browser executable

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { chromium } from 'playwright-core';
import { WebSocket } from 'ws';

const BASE = process.env.SWITCHBOARD_URL;
const KEY = process.env.SWITCHBOARD_ADMIN_KEY;
const NODE_A = process.env.SWITCHBOARD_NODE_A;
const NODE_B = process.env.SWITCHBOARD_NODE_B;
const SHOTS = process.env.SWITCHBOARD_SCREENSHOTS;
mkdirSync(SHOTS, { recursive: true });

let browser;
const sockets = new Set();
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
});
after(async () => {
  for (const ws of sockets) ws.terminate();
  await browser?.close();
});

// client opens a real WebSocket as user, waits for the welcome and joins
// rooms (names, or join fields such as { room, echo: false }).
async function client(base, user, ...rooms) {
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/ws?user=${encodeURIComponent(user)}`);
  sockets.add(ws);
  ws.frames = [];
  ws.waiters = [];
  ws.on('message', (data) => {
    const f = JSON.parse(String(data));
    if (f.type === 'ping') ws.send('{"type":"pong"}');
    ws.frames.push(f);
    if (ws.frames.length > 200) ws.frames.shift();
    ws.waiters = ws.waiters.filter((w) => !w(f));
  });
  ws.closed = once(ws, 'close').then(([code]) => { sockets.delete(ws); return code; });
  // next waits for a frame matching pred; an error frame or 10 s fail it.
  const next = (pred, what) => new Promise((resolve, reject) => {
    const hit = ws.frames.find(pred);
    if (hit) return resolve(hit);
    const timer = setTimeout(() => reject(new Error(`${user}: no ${what} within 10 s: ${JSON.stringify(ws.frames)}`)), 10000);
    ws.waiters.push((f) => {
      if (f.type === 'error') { clearTimeout(timer); reject(new Error(`${user}: ${JSON.stringify(f)}`)); return true; }
      if (!pred(f)) return false;
      clearTimeout(timer);
      resolve(f);
      return true;
    });
  });
  ws.next = next;
  await next((f) => f.type === 'welcome', 'welcome');
  for (const [i, r] of rooms.entries()) {
    const join = typeof r === 'string' ? { room: r } : r; // { room, echo }
    const room = join.room;
    ws.send(JSON.stringify({ type: 'join', ...join, id: `j${i}` }));
    await next((f) => f.type === 'ack' && f.ref === `j${i}`, `ack of joining ${room}`);
  }
  return ws;
}

async function closeAll(list) {
  await Promise.all(list.map((ws) => { ws.close(); return ws.closed; }));
}

// A dashboard tab; errors and CSP violations are collected.
async function dashboard(base) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1100 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // Console errors (CSP violations among them) fail the test; the 401s the
  // page asks for (a wrong key, the probe of a session) are expected.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 401/.test(m.text())) errors.push(m.text());
  });
  page.setDefaultTimeout(15000);
  await page.goto(base + '/admin');
  return { context, page, errors };
}

async function login(page, key) {
  await page.locator('#key').fill(key);
  await page.locator('#login-button').click();
}

const num = (page, id) => page.locator(`#${id}`).textContent().then(Number);
// until waits for the number shown in #id to compare (op: '==' or '>=')
// with want; the page's CSP allows no eval, so the check is spelled out.
const until = (page, id, op, want) => page.waitForFunction(([id, op, want]) => {
  const v = Number(document.getElementById(id).textContent);
  return op === '==' ? v === want : v >= want;
}, [id, op, want]);

// snapshots waits until the page has shown n more snapshots.
async function snapshots(page, n) {
  const now = await page.evaluate(() => Number(document.body.dataset.snapshots || 0));
  await page.waitForFunction((want) => Number(document.body.dataset.snapshots || 0) >= want, now + n);
}

let dash;

test('a wrong key is refused on the page; the right one opens the live dashboard', async () => {
  dash = await dashboard(BASE);
  const { page } = dash;
  await page.waitForSelector('#login:not([hidden])');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'key');
  const refused = page.waitForResponse((r) => r.url().endsWith('/admin/login'));
  await login(page, 'not-the-key');
  assert.equal((await refused).status(), 401);
  await page.locator('#login-error', { hasText: 'Wrong key.' }).waitFor();
  await login(page, KEY);
  await page.waitForSelector('#dash:not([hidden])');
  await page.waitForSelector('#live[data-state="open"]');
  assert.equal(await page.locator('#served-by').textContent(), 'solo');
  assert.equal(await page.locator('#key').inputValue(), '', 'the key is not left in the form');
  // The key is in no storage the page's scripts can read, and the cookie is HttpOnly.
  assert.equal(await page.evaluate(() => document.cookie), '');
  assert.equal(await page.evaluate(() => sessionStorage.length + localStorage.length), 0);
  const [cookie] = await dash.context.cookies();
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.ok(!cookie.value.includes(KEY));
  // uPlot is loaded from the server itself and draws the charts.
  assert.equal(await page.evaluate(() => typeof window.uPlot), 'function');
  await page.waitForSelector('#chart-connections .uplot canvas');
  await page.waitForSelector('#chart-messages .uplot canvas');
  await page.waitForSelector('#chart-drops .uplot canvas');
  await page.waitForSelector('#chart-people .uplot canvas');
});

let crowd = [];

test('the connection count follows real clients up and the top room shows its members', async () => {
  const { page } = dash;
  assert.equal(await num(page, 'stat-connections'), 0);
  crowd = await Promise.all(Array.from({ length: 12 }, (_, i) =>
    client(BASE, `load-${i}`, 'lobby', ...(i < 5 ? ['five'] : []))));
  crowd.push(await client(BASE, 'load-0', 'lobby')); // a second tab of load-0
  await until(page, 'stat-connections', '==', 13);
  await until(page, 'stat-users', '==', 12);
  await until(page, 'stat-rooms', '==', 2);
  const top = page.locator('#top-rooms tbody tr');
  await page.waitForFunction(() => document.querySelectorAll('#top-rooms tbody tr').length === 2);
  assert.deepEqual(await top.nth(0).locator('td').allTextContents(), ['lobby', '12']);
  assert.deepEqual(await top.nth(1).locator('td').allTextContents(), ['five', '5']);
  const row = page.locator('#nodes tbody tr[data-key="solo"] td');
  assert.deepEqual((await row.allTextContents()).slice(0, 4), ['solo (this node)', '13', '12', '2']);
});

test('what users are called is shown as text, never as markup', async () => {
  const { page } = dash;
  const evil = '<img src=x onerror="window.__xss=1">';
  const ws = await client(BASE, evil);
  await page.locator('#user-id').fill(evil);
  await page.locator('#lookup button').click();
  await page.locator('#user-summary', { hasText: `${evil}: online` }).waitFor();
  assert.equal(await page.locator('#dash img').count(), 0);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  await closeAll([ws]);
});

test('messages per second rise while clients publish and fall back when they stop', async () => {
  const { page } = dash;
  let running = true;
  const publishing = (async () => {
    while (running) {
      for (const ws of crowd.slice(0, 4)) ws.send(JSON.stringify({ type: 'publish', room: 'lobby', data: { t: Date.now() } }));
      await new Promise((r) => setTimeout(r, 50)); // about 80 a second
    }
  })();
  await until(page, 'stat-in', '>=', 20);
  await until(page, 'stat-out', '>=', 200); // each reaches the 12 other members of lobby
  running = false;
  await publishing;
  await until(page, 'stat-in', '==', 0);
});

test('a client that stops reading is cut off and shows as a slow-consumer cut-off', async () => {
  const { page } = dash;
  const slow = await client(BASE, 'slowpoke', 'flood');
  const pub = await client(BASE, 'firehose', { room: 'flood', echo: false });
  slow._socket.pause(); // stops reading: the kernel buffers fill, then the server's queue
  const big = 'x'.repeat(32 << 10);
  let running = true;
  const flooding = (async () => {
    while (running && pub.readyState === WebSocket.OPEN) {
      pub.send(JSON.stringify({ type: 'publish', room: 'flood', data: big }));
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  // Publishers into the crowd's room too, so the charts have something to show.
  const chatter = setInterval(() => {
    for (const ws of crowd.slice(0, 3)) ws.send(JSON.stringify({ type: 'publish', room: 'lobby', data: 'hi' }));
  }, 100);
  try {
    await until(page, 'stat-cutoffs', '==', 1);
    slow._socket.resume(); // reads what the kernel holds, then the end the server gave it
    const code = await slow.closed;
    assert.ok([4001, 1006].includes(code), `slowpoke's connection ended with ${code}`);
    running = false;
    await flooding;
    await until(page, 'stat-in', '>=', 0.1);
    await page.locator('#user-id').fill('load-3');
    await page.locator('#lookup button').click();
    await page.waitForSelector('#user-summary[data-online="true"]');
    await snapshots(page, 2); // the charts draw two more seconds of traffic
    await page.screenshot({ path: join(SHOTS, 'admin.png'), fullPage: true });
  } finally {
    running = false;
    clearInterval(chatter);
  }
  const row = page.locator('#nodes tbody tr[data-key="solo"] td');
  assert.equal((await row.allTextContents())[7], '1', 'the node row counts the cut-off');
  assert.equal(pub.readyState, WebSocket.OPEN, 'the publisher, who reads, is not cut off');
  await closeAll([pub]);
});

test('looking up a user finds their connections; disconnect closes them with 4003', async () => {
  const { page } = dash;
  await page.locator('#user-id').fill('load-0');
  await page.locator('#lookup button').click();
  await page.waitForSelector('#user-result:not([hidden])');
  const summary = page.locator('#user-summary');
  assert.equal(await summary.getAttribute('data-online'), 'true');
  assert.equal(await summary.getAttribute('data-connections'), '2');
  assert.equal(await page.locator('#user-conns li').count(), 2);
  assert.match(await page.locator('#user-conns li').first().textContent(), /rooms: (five, )?lobby/);
  const targets = crowd.filter((ws) => ws.url.includes('user=load-0'));
  assert.equal(targets.length, 2);
  await page.locator('#disconnect').click();
  assert.deepEqual(await Promise.all(targets.map((ws) => ws.closed)), [4003, 4003]);
  await page.locator('#user-summary', { hasText: 'disconnect sent' }).waitFor();
  // Other users stay.
  await until(page, 'stat-connections', '==', 11);
  await page.locator('#lookup button').click();
  await page.waitForSelector('#user-summary[data-online="false"]');
  crowd = crowd.filter((ws) => !targets.includes(ws));
});

test('the connection count falls back to zero when the clients leave', async () => {
  const { page } = dash;
  await closeAll(crowd);
  await until(page, 'stat-connections', '==', 0);
  await until(page, 'stat-users', '==', 0);
  await page.waitForSelector('#no-rooms:not([hidden])');
  assert.deepEqual(dash.errors, []);
  await dash.context.close();
});

test('two nodes on one Redis: the dashboard on one shows both, each with its own clients', async () => {
  const A = process.env.SWITCHBOARD_NODE_A_ID;
  const B = process.env.SWITCHBOARD_NODE_B_ID;
  const d = await dashboard(NODE_A);
  await login(d.page, KEY);
  await d.page.waitForSelector('#live[data-state="open"]');
  const onA = [await client(NODE_A, 'ann', 'shared')];
  const onB = await Promise.all([client(NODE_B, 'ann', 'shared'), client(NODE_B, 'ben', 'shared'), client(NODE_B, 'cy')]);
  const cells = (node) => d.page.locator(`#nodes tbody tr[data-key="${node}"] td`);
  await d.page.waitForFunction(([a, b]) => {
    const conns = (n) => document.querySelector(`#nodes tbody tr[data-key="${n}"] td:nth-child(2)`)?.textContent;
    return conns(a) === '1' && conns(b) === '3';
  }, [A, B]);
  assert.equal(await cells(A).first().textContent(), `${A} (this node)`);
  // The charts can follow the cluster or one node.
  assert.deepEqual(await d.page.locator('#scope option').evaluateAll((os) => os.map((o) => o.value)), ['', A, B]);
  await d.page.locator('#scope').selectOption(B);
  await snapshots(d.page, 1); // a new snapshot redraws with the choice kept
  assert.equal(await d.page.locator('#scope').inputValue(), B);
  assert.equal(await cells(B).first().textContent(), B);
  await until(d.page, 'stat-connections', '==', 4);
  await until(d.page, 'stat-users', '==', 3);
  // ann is in "shared" on both nodes: counted once.
  await d.page.waitForFunction(() => {
    const tds = [...document.querySelectorAll('#top-rooms tbody tr:first-child td')].map((td) => td.textContent);
    return tds[0] === 'shared' && tds[1] === '2';
  });
  // A user held by node B is disconnected from node A's dashboard.
  await d.page.locator('#user-id').fill('ben');
  await d.page.locator('#lookup button').click();
  await d.page.waitForSelector('#user-summary[data-connections="1"]');
  await d.page.locator('#disconnect').click();
  assert.equal(await onB[1].closed, 4003);
  await d.page.waitForFunction((b) =>
    document.querySelector(`#nodes tbody tr[data-key="${b}"] td:nth-child(2)`)?.textContent === '2', B);
  await d.page.screenshot({ path: join(SHOTS, 'admin-two-nodes.png'), fullPage: true });
  await closeAll([...onA, onB[0], onB[2]]);
  await until(d.page, 'stat-connections', '==', 0);
  assert.deepEqual(d.errors, []);
  await d.context.close();
});
