// The demo page (web/static/index.html, app.js, switchboard.js) in a real
// browser: Debian's chromium driven by playwright-core. Run by
// e2e/browser_test.go (TestBrowser), which starts the server with
// --auth none --ping-interval 1s --pong-timeout 1s --api-key KEY
// --history-rooms h:* and passes:
//   SWITCHBOARD_URL          ws://host:port (the page is at http://host:port/)
//   SWITCHBOARD_CONTROL      http://host:port of the control endpoint (POST /restart ...)
//   SWITCHBOARD_API_KEY      the backend API key (for /api/publish)
//   SWITCHBOARD_PROXY        ws://host:port of a TCP proxy to the server whose
//                            network can be cut (the page is at http://host:port/)
//   SWITCHBOARD_NET          http://host:port of the proxy's control endpoint:
//                            POST /cut silences its connections and resets new
//                            ones, POST /restore ends that
//   SWITCHBOARD_NOWS         http://host:port of an HTTP proxy to the server that
//                            refuses every WebSocket upgrade (403) and forwards
//                            everything else, event streams included
//   SWITCHBOARD_SCREENSHOTS  directory for screenshots of the main states
//   CHROMIUM                 the browser executable (default /usr/bin/chromium)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const PAGE = process.env.SWITCHBOARD_URL.replace(/^ws/, 'http') + '/';
const CONTROL = process.env.SWITCHBOARD_CONTROL;
const API_KEY = process.env.SWITCHBOARD_API_KEY;
const PROXY_PAGE = process.env.SWITCHBOARD_PROXY.replace(/^ws/, 'http') + '/';
const NET = process.env.SWITCHBOARD_NET;
const NOWS_PAGE = process.env.SWITCHBOARD_NOWS + '/';
const SHOTS = process.env.SWITCHBOARD_SCREENSHOTS;
const BOUND_MS = 2000; // ping_interval + pong_timeout
mkdirSync(SHOTS, { recursive: true });

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
});
after(async () => { await browser?.close(); });

async function control(action) {
  const res = await fetch(`${CONTROL}/${action}`, { method: 'POST' });
  assert.equal(res.status, 200, `control ${action}: ${await res.text()}`);
}

// net cuts or restores the network between the proxy's pages and the server.
async function net(action) {
  const res = await fetch(`${NET}/${action}`, { method: 'POST' });
  const body = await res.text();
  assert.equal(res.status, 200, `net ${action}: ${body}`);
  return JSON.parse(body);
}

// apiPublish publishes through the backend API (straight to the server).
async function apiPublish(room, data) {
  const res = await fetch(PAGE + 'api/publish', {
    method: 'POST',
    headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ room, data }),
  });
  const body = await res.text();
  assert.equal(res.status, 200, body);
  return JSON.parse(body);
}

// A new browser context is a separate profile: cookies, storage, sockets.
async function user(width = 1100, height = 720) {
  const context = await browser.newContext({ viewport: { width, height } });
  const errors = [];
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  page.setDefaultTimeout(8000);
  return { context, page, errors };
}

const shot = (page, name) => page.screenshot({ path: join(SHOTS, name + '.png'), fullPage: true });
const state = (page) => page.locator('#state');
const people = (page) => page.locator('#people li');
const log = (page, room) => page.locator(`.log[data-view="${room}"]`);
async function connected(page) {
  await page.waitForSelector('#state[data-state="open"]');
  await page.waitForSelector('#count-rooms:not(:text-is("0"))');
}

let alice, bob, bob2;

test('signing in by name joins the lobby and shows who is online', async () => {
  alice = await user();
  await alice.page.goto(PAGE);
  await shot(alice.page, '01-sign-in');
  // Keyboard only: the name field has focus; Enter submits.
  assert.equal(await alice.page.evaluate(() => document.activeElement.id), 'name');
  await alice.page.keyboard.type('alice');
  await alice.page.keyboard.press('Enter');
  await connected(alice.page);
  assert.equal(await state(alice.page).textContent(), 'connected');
  assert.deepEqual(await people(alice.page).evaluateAll((li) => li.map((e) => e.dataset.user)), ['alice']);
  assert.equal(await alice.page.locator('#count-users').textContent(), '1');

  bob = await user();
  await bob.page.goto(PAGE + '?user=bob&rooms=lobby,dev');
  await connected(bob.page);
  await alice.page.waitForSelector('#people li[data-user="bob"]');
  await log(alice.page, 'lobby').getByText('bob joined').waitFor();
  assert.equal(await alice.page.locator('#count-users').textContent(), '2');
  await bob.page.waitForSelector('#count-rooms:text-is("2")');
});

test('a message typed in one browser appears in the other, as text', async () => {
  await bob.page.locator('.rooms button[data-room="lobby"]').click();
  await bob.page.getByLabel('Message to lobby').fill('hello alice');
  await bob.page.keyboard.press('Enter');
  await log(alice.page, 'lobby').locator('li.msg', { hasText: 'hello alice' }).waitFor();
  const evil = '<img src=x onerror="window.__xss=1">';
  await bob.page.getByLabel('Message to lobby').fill(evil);
  await bob.page.getByRole('button', { name: 'Send', exact: true }).click();
  await log(alice.page, 'lobby').locator('li.msg .body', { hasText: evil }).waitFor();
  assert.equal(await alice.page.locator('.log img').count(), 0);
  assert.equal(await alice.page.evaluate(() => window.__xss), undefined);
  assert.equal(await alice.page.locator('#count-messages').textContent(), '2');
  await alice.page.getByLabel('Message to lobby').fill('hi bob, welcome');
  await alice.page.keyboard.press('Enter');
  await log(bob.page, 'lobby').locator('li.msg', { hasText: 'hi bob, welcome' }).waitFor();
  await shot(alice.page, '02-conversation');
});

test('a direct message shows in the direct view', async () => {
  // Select bob in the presence list to write to him directly.
  await alice.page.locator('#people li[data-user="bob"] button').click();
  assert.equal(await alice.page.locator('#composer-to').inputValue(), 'bob');
  await alice.page.keyboard.type('just for you');
  await alice.page.keyboard.press('Enter');
  await bob.page.waitForSelector('.rooms button[data-room="direct"] .badge:text-is("1")');
  await bob.page.locator('.rooms button[data-room="direct"]').click();
  await log(bob.page, 'direct').locator('li.msg', { hasText: 'just for you' }).waitFor();
  assert.equal(await log(bob.page, 'direct').locator('li.msg .from').first().textContent(), 'alice');
  await shot(bob.page, '03-direct');
});

test('a user with two tabs is listed once', async () => {
  bob2 = await bob.context.newPage();
  await bob2.goto(PAGE + '?user=bob&rooms=lobby');
  await connected(bob2);
  await bob2.waitForSelector('#people li[data-user="alice"]');
  assert.deepEqual(await people(bob2).evaluateAll((li) => li.map((e) => e.dataset.user)), ['alice', 'bob']);
  await alice.page.locator('.rooms button[data-room="lobby"]').click();
  await alice.page.waitForTimeout(300);
  assert.deepEqual(await people(alice.page).evaluateAll((li) => li.map((e) => e.dataset.user)), ['alice', 'bob']);
  assert.equal(await log(alice.page, 'lobby').getByText('bob joined').count(), 1);
});

test('closing the other user shows leave within the liveness bound', async () => {
  const t0 = Date.now();
  await bob.context.close();
  await log(alice.page, 'lobby').getByText('bob left').waitFor({ timeout: BOUND_MS + 2000 });
  assert.ok(Date.now() - t0 <= BOUND_MS + 2000);
  assert.deepEqual(await people(alice.page).evaluateAll((li) => li.map((e) => e.dataset.user)), ['alice']);
  assert.equal(await alice.page.locator('#count-users').textContent(), '1');
});

test('after a server restart the page reconnects, rejoins and messages flow again', async () => {
  const carol = await user(375, 760);
  await carol.page.goto(PAGE + '?user=carol&rooms=lobby');
  await connected(carol.page);
  await alice.page.waitForSelector('#people li[data-user="carol"]');
  await shot(carol.page, '04-mobile-375');

  await control('stop');
  await alice.page.waitForSelector('#state[data-state="reconnecting"]');
  assert.match(await state(alice.page).textContent(), /^reconnecting in \d+s$/);
  await shot(alice.page, '05-reconnecting');
  await control('start');
  await alice.page.waitForSelector('#state[data-state="open"]', { timeout: 20000 });
  await carol.page.waitForSelector('#state[data-state="open"]', { timeout: 20000 });
  await alice.page.waitForSelector('#people li[data-user="carol"]');
  await carol.page.getByLabel('Message to lobby').fill('back after the restart');
  await carol.page.keyboard.press('Enter');
  await log(alice.page, 'lobby').locator('li.msg', { hasText: 'back after the restart' }).waitFor();
  await shot(alice.page, '06-reconnected');
  assert.deepEqual(alice.errors, []);
  assert.deepEqual(carol.errors, []);
  await carol.context.close();
  await alice.context.close();
});

test('a tab that loses the network for 5 s catches up on a history room: the missed messages once, in order, then live', async () => {
  const room = 'h:tab';
  const tab = await user();
  // Records the frames the page's WebSocket sends (nothing else changes).
  await tab.context.addInitScript(() => {
    window.__sent = [];
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data) { window.__sent.push(String(data)); return send.call(this, data); };
  });
  const sent = async () => (await tab.page.evaluate(() => window.__sent)).map((f) => JSON.parse(f));
  const shown = (text) => log(tab.page, room).locator('li.msg', { hasText: text });
  const bodies = () => log(tab.page, room).locator('li.msg .body').allTextContents();
  await tab.page.goto(`${PROXY_PAGE}?user=hana&rooms=${room}`);
  await connected(tab.page);
  const first = await apiPublish(room, 'before the outage');
  await shown('before the outage').waitFor();
  const joins = (await sent()).filter((f) => f.type === 'join' && f.room === room);
  assert.deepEqual(joins.map((f) => f.since), [undefined]);

  const t0 = Date.now();
  const { silenced } = await net('cut');
  assert.ok(silenced >= 1, `connections silenced: ${silenced}`);
  // Published while the server still counts the tab in: these frames
  // vanish on the way.
  await apiPublish(room, 'missed 1');
  await apiPublish(room, 'missed 2');
  // The page notices through its own watchdog (nothing arrives any more).
  await tab.page.waitForSelector('#state[data-state="reconnecting"]', { timeout: BOUND_MS + 3000 });
  await apiPublish(room, 'missed 3');
  await apiPublish(room, 'missed 4');
  await tab.page.waitForTimeout(Math.max(0, 5000 - (Date.now() - t0))); // the outage itself
  assert.notEqual(await state(tab.page).getAttribute('data-state'), 'open');
  await shot(tab.page, '07-network-lost');
  const { refused } = await net('restore');
  assert.ok(refused >= 1, `reconnect attempts refused while the network was down: ${refused}`);

  // Back online: the page reconnects by itself (backoff up to 15 s) and
  // catches up from the join ack.
  await shown('missed 4').waitFor({ timeout: 25000 });
  await tab.page.waitForSelector('#state[data-state="open"]');
  const rejoins = (await sent()).filter((f) => f.type === 'join' && f.room === room && f.since !== undefined);
  assert.equal(rejoins.length, 1, JSON.stringify(rejoins));
  assert.equal(rejoins[0].since, first.offset);
  assert.equal(rejoins[0].epoch, first.epoch);
  await apiPublish(room, 'live again');
  await shown('live again').waitFor();
  assert.deepEqual(await bodies(),
    ['before the outage', 'missed 1', 'missed 2', 'missed 3', 'missed 4', 'live again']);
  await shot(tab.page, '08-caught-up');
  assert.deepEqual(tab.errors, []);
  await tab.context.close();
});

test('behind a proxy that refuses WebSocket upgrades the page falls back to server-sent events and works the same', async () => {
  const room = 'fallback';
  const wes = await user();
  await wes.page.goto(`${PAGE}?user=wes&rooms=${room}`);
  await connected(wes.page);
  assert.equal(await state(wes.page).getAttribute('data-transport'), 'websocket');

  const sam = await user();
  await sam.page.goto(`${NOWS_PAGE}?user=sam&rooms=${room}`);
  await connected(sam.page);
  // The page says which transport carries it.
  assert.equal(await state(sam.page).getAttribute('data-transport'), 'sse');
  assert.equal(await state(sam.page).textContent(), 'connected (events)');
  assert.equal(await sam.page.evaluate(() => document.querySelector('#state').title), 'server-sent events (WebSocket unavailable)');

  // One registry: each sees the other, and messages go both ways.
  await wes.page.waitForSelector('#people li[data-user="sam"]');
  await sam.page.waitForSelector('#people li[data-user="wes"]');
  await sam.page.getByLabel(`Message to ${room}`).fill('sent over a POST');
  await sam.page.keyboard.press('Enter');
  await log(wes.page, room).locator('li.msg', { hasText: 'sent over a POST' }).waitFor();
  await log(sam.page, room).locator('li.msg', { hasText: 'sent over a POST' }).waitFor();
  await wes.page.getByLabel(`Message to ${room}`).fill('received as an event');
  await wes.page.keyboard.press('Enter');
  await log(sam.page, room).locator('li.msg', { hasText: 'received as an event' }).waitFor();
  const published = await apiPublish(room, 'from the backend');
  assert.ok(published.id);
  await log(sam.page, room).locator('li.msg', { hasText: 'from the backend' }).waitFor();
  await shot(sam.page, '09-server-sent-events');

  // Liveness holds on the stream: after several ping intervals sam is
  // still connected (the page answers pings with POSTs).
  await sam.page.waitForTimeout(3 * BOUND_MS);
  assert.equal(await state(sam.page).getAttribute('data-state'), 'open');
  assert.equal(await log(wes.page, room).getByText('sam left').count(), 0);

  // Signing out ends the stream at once: wes sees the leave well within
  // the liveness bound.
  const t0 = Date.now();
  await sam.page.locator('#disconnect').click();
  await log(wes.page, room).getByText('sam left').waitFor({ timeout: BOUND_MS });
  assert.ok(Date.now() - t0 < BOUND_MS, `leave after ${Date.now() - t0} ms`);
  assert.deepEqual(sam.errors, []);
  assert.deepEqual(wes.errors, []);
  await sam.context.close();
  await wes.context.close();
});
