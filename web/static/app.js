// The demo page: sign in, join rooms, talk, send direct messages, watch who
// is online. Message data is only ever written with textContent.
import { Switchboard } from './switchboard.js';

const $ = (id) => document.getElementById(id);
const DIRECT = '\u0000direct'; // view key of the direct messages (not a valid room name)

let sb = null;
let me = '';
let current = null; // room name or DIRECT
let messages = 0;
let countdown = null;
const views = new Map(); // key -> {log: <ul>, unread: number, tab: <li>}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-') || k.startsWith('aria-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  e.append(...children);
  return e;
}

function text(data) {
  if (data && typeof data === 'object' && typeof data.text === 'string') return data.text;
  return typeof data === 'string' ? data : JSON.stringify(data);
}

function clock(ts) {
  return new Date(ts || Date.now()).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

// ---- views (one log per room, plus the direct view) ----

function view(key) {
  let v = views.get(key);
  if (v) return v;
  const label = key === DIRECT ? 'Direct messages' : key;
  const log = el('ul', { class: 'log', role: 'log', 'aria-live': 'polite', 'aria-label': `Messages in ${label}`, hidden: true });
  log.dataset.view = key === DIRECT ? 'direct' : key;
  $('logs').append(log);
  const badge = el('span', { class: 'badge', 'aria-label': '' });
  const button = el('button', { type: 'button' }, el('span', { text: key === DIRECT ? 'Direct' : key }), badge);
  button.dataset.room = key === DIRECT ? 'direct' : key;
  button.addEventListener('click', () => show(key));
  const tab = el('li', {}, button);
  if (key === DIRECT) $('room-list').append(tab);
  else $('room-list').insertBefore(tab, views.get(DIRECT)?.tab || null);
  v = { log, unread: 0, tab, button, badge };
  views.set(key, v);
  return v;
}

function dropView(key) {
  const v = views.get(key);
  if (!v) return;
  v.log.remove();
  v.tab.remove();
  views.delete(key);
}

function show(key) {
  current = key;
  for (const [k, v] of views) {
    v.log.hidden = k !== key;
    if (k === key) { v.button.setAttribute('aria-current', 'page'); v.unread = 0; setBadge(v); }
    else v.button.removeAttribute('aria-current');
  }
  const direct = key === DIRECT;
  $('view-title').textContent = direct ? 'Direct messages' : key;
  $('leave').hidden = direct;
  $('to-field').hidden = !direct;
  $('composer-label').textContent = direct ? 'Direct message' : `Message to ${key}`;
  $('people-room').textContent = direct ? '—' : key;
  renderPeople();
  counts();
}

function setBadge(v) {
  v.badge.textContent = v.unread ? String(v.unread) : '';
  v.badge.setAttribute('aria-label', v.unread ? `${v.unread} unread` : '');
}

function add(key, item, unread = true) {
  const v = view(key);
  const atEnd = v.log.scrollHeight - v.log.scrollTop - v.log.clientHeight < 40;
  v.log.append(item);
  if (atEnd) v.log.scrollTop = v.log.scrollHeight;
  if (unread && key !== current) { v.unread++; setBadge(v); }
}

function addMessage(key, from, body, ts, note) {
  const li = el('li', { class: 'msg' },
    el('span', { class: 'from', text: from }),
    el('span', { class: 'body', text: body }),
    el('time', { class: 'time', text: clock(ts), dateTime: new Date(ts || Date.now()).toISOString() }));
  if (note) li.prepend(el('span', { class: 'hint', text: note + ' ' }));
  add(key, li);
}

function addEvent(key, message) {
  add(key, el('li', { class: 'event', text: message }), false);
}

// ---- presence and counts ----

function renderPeople() {
  const users = current && current !== DIRECT && sb ? sb.usersIn(current) : [];
  $('people').replaceChildren(...users.map((u) => {
    const b = el('button', { type: 'button', 'aria-label': u === me ? `${u} (you)` : `Send a direct message to ${u}` }, el('span', { text: u }));
    if (u === me) b.append(el('span', { class: 'you', text: ' (you)' }));
    b.addEventListener('click', () => { show(DIRECT); $('composer-to').value = u; $('composer-text').focus(); });
    return el('li', { 'data-user': u }, b);
  }));
}

// The server's own counts (GET /stats: numbers only, no names), refreshed
// every few seconds; dashes while they cannot be read.
async function serverCounts() {
  try {
    const res = await fetch('/stats', { cache: 'no-store' });
    if (!res.ok) throw new Error(String(res.status));
    const st = await res.json();
    $('count-server-users').textContent = String(st.users);
    $('count-server-conns').textContent = String(st.connections);
  } catch {
    $('count-server-users').textContent = '–';
    $('count-server-conns').textContent = '–';
  }
}
setInterval(serverCounts, 3000);
serverCounts();

function counts() {
  $('count-users').textContent = String(current && current !== DIRECT && sb ? sb.usersIn(current).length : 0);
  $('count-rooms').textContent = String(sb ? sb.joinedRooms().length : 0);
  $('count-messages').textContent = String(messages);
}

// ---- connection state ----

function setState(state, label) {
  $('state').dataset.state = state;
  $('state').textContent = label;
  $('app').dataset.online = String(state === 'open');
}

function onState({ state, delay, code, reason, transport }) {
  clearInterval(countdown);
  countdown = null;
  // Which transport carries the page: a WebSocket, or the event-stream
  // fallback where WebSockets cannot get through.
  $('state').dataset.transport = transport;
  $('state').title = transport === 'sse' ? 'server-sent events (WebSocket unavailable)' : 'WebSocket';
  if (state === 'open') setState('open', transport === 'sse' ? 'connected (events)' : 'connected');
  else if (state === 'connecting') setState('connecting', 'connecting…');
  else if (state === 'reconnecting') {
    const until = Date.now() + delay;
    const tick = () => setState('reconnecting', `reconnecting in ${Math.max(0, Math.ceil((until - Date.now()) / 1000))}s`);
    tick();
    countdown = setInterval(tick, 250);
  } else {
    const why = code === 4002 ? ' (replaced by a newer connection)' : code === 4003 ? ' (disconnected by the server)' : '';
    setState('closed', 'offline' + why);
    if (code && code !== 1000 && current) addEvent(current === DIRECT ? DIRECT : current, `connection closed: ${code} ${reason || ''}`.trim());
  }
}

// ---- sign in / out ----

function signIn(name, token) {
  if (sb) sb.close();
  $('signin-error').textContent = '';
  sb = new Switchboard({ user: token ? undefined : name, token: token || undefined });
  sb.on('state', onState);
  sb.on('open', (w) => {
    if (me) for (const r of sb.joinedRooms()) addEvent(r, 'reconnected');
    me = w.user;
    $('me').textContent = me;
    $('signin').hidden = true;
    $('session').hidden = false;
    $('app').hidden = false;
  });
  sb.on('message', (m) => {
    messages++;
    if (m.room) addMessage(m.room, m.from, text(m.data), m.ts);
    else if (m.to) addMessage(DIRECT, m.from, text(m.data), m.ts, m.from === me && m.to === me ? 'to yourself:' : undefined);
    else addMessage(current || DIRECT, m.from, text(m.data), m.ts, 'broadcast:');
    counts();
  });
  sb.on('join', ({ room, user }) => { if (user !== me) addEvent(room, `${user} joined`); });
  sb.on('leave', ({ room, user }) => { if (user !== me) addEvent(room, `${user} left`); });
  sb.on('presence', ({ room }) => { if (room === current) renderPeople(); counts(); });
  sb.on('error', (e) => addEvent(current || DIRECT, `error: ${e.code}: ${e.message}`));
  // A history room whose gap could not be filled: say so; the messages
  // from here on are complete again.
  sb.on('reset', ({ room }) => addEvent(room, 'some earlier messages could not be recovered'));
  sb.on('transport', ({ transport }) => {
    if (transport === 'sse' && me) addEvent(current || DIRECT, 'WebSocket unavailable: using server-sent events');
  });
  sb.on('close', ({ code }) => {
    if (code === 1006 && !me && sb.transport === 'websocket') $('signin-error').textContent = 'Could not connect (refused or unreachable); retrying…';
  });
  view(DIRECT);
  const params = new URLSearchParams(location.search);
  const rooms = (params.get('rooms') || 'lobby').split(',').map((r) => r.trim()).filter(Boolean);
  sb.once('open', () => { for (const r of rooms) joinRoom(r, r === rooms[0]); });
}

async function joinRoom(room, focus = true) {
  view(room);
  if (focus) show(room);
  try {
    await sb.join(room);
    addEvent(room, `you joined ${room}`);
  } catch (err) {
    addEvent(room, `could not join ${room}: ${err.code || ''} ${err.message}`.trim());
    if (err.code === 'forbidden' || err.code === 'bad_request') {
      dropView(room);
      if (current === room) show(DIRECT);
    }
  }
  if (room === current) renderPeople();
  counts();
}

function signOut() {
  if (sb) sb.close();
  sb = null;
  me = '';
  for (const k of [...views.keys()]) dropView(k);
  current = null;
  messages = 0;
  $('signin').hidden = false;
  $('session').hidden = true;
  $('app').hidden = true;
  counts();
  $('name').focus();
}

// ---- wiring ----

$('signin').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = $('name').value.trim();
  const token = $('token').value.trim();
  if (!name && !token) { $('signin-error').textContent = 'Enter a name or paste a token.'; $('name').focus(); return; }
  signIn(name, token);
});

$('disconnect').addEventListener('click', signOut);

$('join-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const room = $('join-room').value.trim();
  if (!room || !sb) return;
  $('join-room').value = '';
  joinRoom(room);
});

$('leave').addEventListener('click', async () => {
  const room = current;
  if (!room || room === DIRECT || !sb) return;
  dropView(room);
  const next = [...views.keys()].find((k) => k !== DIRECT) || DIRECT;
  show(next);
  try { await sb.leave(room); } catch { /* gone either way */ }
  counts();
});

$('composer').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('composer-text');
  const body = input.value;
  if (!body.trim() || !sb) return;
  $('composer-error').textContent = '';
  try {
    if (current === DIRECT) {
      const to = $('composer-to').value.trim();
      if (!to) { $('composer-error').textContent = 'Enter the user to send to.'; $('composer-to').focus(); return; }
      input.value = '';
      await sb.send(to, { text: body });
      if (to !== me) addMessage(DIRECT, `${me} → ${to}`, body);
    } else {
      input.value = '';
      await sb.publish(current, { text: body });
    }
  } catch (err) {
    input.value = input.value || body;
    $('composer-error').textContent = `Not sent: ${err.code || 'error'}: ${err.message}`;
  }
});

const params = new URLSearchParams(location.search);
$('name').value = params.get('user') || '';
if (params.get('user')) signIn(params.get('user'));
else $('name').focus();
counts();
