// Switchboard admin dashboard: signs in with an admin key (exchanged once
// for an HttpOnly session cookie), then follows GET /admin/stream, one
// JSON snapshot per second, and draws it with uPlot (served from the
// binary, like this file). Everything from the server is shown as text.
/* global uPlot */

const $ = (id) => document.getElementById(id);
const HISTORY = 180; // seconds kept in the charts
const COLORS = ['#1d4ed8', '#b45309', '#047857', '#be185d', '#6d28d9', '#0e7490', '#4d7c0f', '#9f1239'];

let stream = null;
let served = '';
const hist = { t: [], series: new Map() };
let lastNodes = [];
const charts = {};

async function call(path, init = {}) {
  const res = await fetch(path, { credentials: 'same-origin', cache: 'no-store', ...init });
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  return { status: res.status, body };
}

function fmtRate(v) { return v >= 100 ? String(Math.round(v)) : v.toFixed(1); }
function setText(el, text) { if (el.textContent !== text) el.textContent = text; }
function setLive(state, text) { $('live').dataset.state = state; setText($('live'), text); }

function showLogin(message = '') {
  stopStream();
  $('dash').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  setText($('login-error'), message);
  setLive('closed', 'signed out');
  $('key').focus();
}

function showDash(snapshot) {
  $('login').hidden = true;
  $('dash').hidden = false;
  $('logout').hidden = false;
  if (snapshot && snapshot.cluster) render(snapshot);
  startStream();
}

function stopStream() {
  if (stream) stream.close();
  stream = null;
}

function startStream() {
  stopStream();
  setLive('connecting', 'connecting');
  const es = new EventSource('/admin/stream');
  stream = es;
  es.onopen = () => setLive('open', 'live');
  es.addEventListener('snapshot', (e) => render(JSON.parse(e.data)));
  es.onerror = async () => {
    if (stream !== es) return;
    setLive('connecting', 'reconnecting');
    if (es.readyState !== EventSource.CLOSED) return; // the browser retries by itself
    // Refused (an expired session, say): find out why, then retry or sign in.
    const { status } = await call('/admin/api/snapshot');
    if (stream !== es) return;
    if (status === 401) showLogin('Your session ended: sign in again.');
    else setTimeout(() => { if (stream === es) startStream(); }, 2000);
  };
}

function render(s) {
  // Counts the snapshots shown, for whoever waits for the next one (tests).
  document.body.dataset.snapshots = String(Number(document.body.dataset.snapshots || 0) + 1);
  served = s.node;
  setText($('served-by'), s.node);
  const c = s.cluster;
  setText($('stat-connections'), String(c.connections));
  setText($('stat-users'), String(c.users));
  setText($('stat-rooms'), String(c.rooms));
  setText($('stat-in'), fmtRate(c.in));
  setText($('stat-out'), fmtRate(c.out));
  setText($('stat-drops'), fmtRate(Object.values(c.drops).reduce((a, b) => a + b, 0)));
  setText($('stat-cutoffs'), String(c.totals.cutoffs));
  renderNodes(s.nodes);
  renderRooms(s.top);
  record(s);
  lastNodes = s.nodes.map((n) => n.node);
  drawCharts(lastNodes);
}

// rows keeps one <tr> per key in tbody, in the order given, with cells' text.
function rows(tbody, items, key, cells) {
  const old = new Map([...tbody.children].map((tr) => [tr.dataset.key, tr]));
  items.forEach((item, i) => {
    const k = key(item);
    let tr = old.get(k);
    old.delete(k);
    const values = cells(item);
    if (!tr) {
      tr = document.createElement('tr');
      tr.dataset.key = k;
      values.forEach(() => tr.appendChild(document.createElement('td')));
    }
    values.forEach((v, j) => setText(tr.children[j], v));
    if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
  });
  old.forEach((tr) => tr.remove());
}

function renderNodes(nodes) {
  rows($('nodes').tBodies[0], nodes, (n) => n.node, (n) => [
    n.node === served ? `${n.node} (this node)` : n.node,
    String(n.connections), String(n.users), String(n.rooms), fmtRate(n.in), fmtRate(n.out),
    fmtRate(Object.values(n.drops).reduce((a, b) => a + b, 0)), String(n.totals.cutoffs),
  ]);
}

function renderRooms(top) {
  rows($('top-rooms').tBodies[0], top, (r) => r.room, (r) => [r.room, String(r.users)]);
  $('no-rooms').hidden = top.length > 0;
}

// record appends the snapshot to the charts' history, trimmed to HISTORY:
// one series per scope ("" for the whole cluster, else a node id) and
// metric, null where a node was not there.
function record(s) {
  const n = hist.t.length;
  hist.t.push(s.ts / 1000);
  const put = (key, v) => {
    if (!hist.series.has(key)) hist.series.set(key, new Array(n).fill(null));
    hist.series.get(key).push(v);
  };
  const scopes = [['', s.cluster], ...s.nodes.map((node) => [node.node, node])];
  for (const [scope, v] of scopes) {
    for (const m of ['connections', 'users', 'rooms', 'in', 'out', 'cutoffs']) put(`${scope}|${m}`, v[m]);
    for (const [reason, rate] of Object.entries(v.drops)) put(`${scope}|drop:${reason}`, rate);
  }
  for (const arr of hist.series.values()) if (arr.length < n + 1) arr.push(null);
  if (hist.t.length > HISTORY) {
    hist.t.shift();
    for (const [key, arr] of hist.series) {
      arr.shift();
      if (arr.every((v) => v === null)) hist.series.delete(key);
    }
  }
}

const series = (scope, metric) => hist.series.get(`${scope}|${metric}`) || hist.t.map(() => null);

// chart draws one uPlot chart in el, rebuilding it when its series change.
function chart(name, labels, data) {
  const el = $(`chart-${name}`);
  const key = labels.join('\u0000');
  let c = charts[name];
  if (!c || c.key !== key) {
    c?.plot.destroy();
    const opts = {
      width: Math.max(el.clientWidth, 280), height: 200,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      series: [{}, ...labels.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 2, points: { show: false } }))],
      axes: [{}, { size: 50 }],
      legend: { live: false },
    };
    c = charts[name] = { key, plot: new uPlot(opts, data, el) };
  } else {
    c.plot.setData(data);
  }
}

// scopeChoices keeps the scope menu listing the whole cluster and each node.
function scopeChoices(nodes) {
  const menu = $('scope');
  const want = ['', ...nodes];
  if ([...menu.options].map((o) => o.value).join('\u0000') === want.join('\u0000')) return;
  const chosen = want.includes(menu.value) ? menu.value : '';
  menu.replaceChildren(...want.map((v) => new Option(v === '' ? 'whole cluster' : v, v)));
  menu.value = chosen;
}

function drawCharts(nodes) {
  scopeChoices(nodes);
  const scope = $('scope').value;
  chart('connections', nodes, [hist.t, ...nodes.map((n) => series(n, 'connections'))]);
  chart('people', ['users', 'rooms'], [hist.t, series(scope, 'users'), series(scope, 'rooms')]);
  chart('messages', ['in', 'out'], [hist.t, series(scope, 'in'), series(scope, 'out')]);
  const reasons = [...new Set([...hist.series.keys()].filter((k) => k.startsWith(`${scope}|drop:`)).map((k) => k.split('|drop:')[1]))].sort();
  chart('drops', [...reasons, 'cut-offs'], [hist.t, ...reasons.map((r) => series(scope, `drop:${r}`)), series(scope, 'cutoffs')]);
}

$('scope').addEventListener('change', () => drawCharts(lastNodes));

window.addEventListener('resize', () => {
  for (const [name, c] of Object.entries(charts)) c.plot.setSize({ width: Math.max($(`chart-${name}`).clientWidth, 280), height: 200 });
});

$('login').addEventListener('submit', async (e) => {
  e.preventDefault();
  const key = $('key').value.trim();
  $('login-button').disabled = true;
  try {
    const { status } = await call('/admin/login', { method: 'POST', headers: { Authorization: `Bearer ${key}` } });
    if (status !== 200) {
      setText($('login-error'), status === 401 ? 'Wrong key.' : `Sign-in failed (HTTP ${status}).`);
      return;
    }
    $('key').value = '';
    const snap = await call('/admin/api/snapshot');
    showDash(snap.body);
  } finally {
    $('login-button').disabled = false;
  }
});

$('logout').addEventListener('click', async () => {
  await call('/admin/logout', { method: 'POST' });
  showLogin();
});

let lookedUp = '';
async function lookup(user) {
  setText($('user-error'), '');
  const { status, body } = await call(`/admin/api/user?id=${encodeURIComponent(user)}`);
  if (status === 401) return showLogin('Your session ended: sign in again.');
  if (status !== 200) {
    $('user-result').hidden = true;
    setText($('user-error'), body?.message || `Look-up failed (HTTP ${status}).`);
    return;
  }
  lookedUp = body.user;
  const here = body.here.length;
  setText($('user-summary'), `${body.user}: ${body.online ? 'online' : 'offline'}, ` +
    `${body.connections} connection${body.connections === 1 ? '' : 's'} in the cluster, ${here} on ${body.node}.`);
  $('user-summary').dataset.online = String(body.online);
  $('user-summary').dataset.connections = String(body.connections);
  const list = $('user-conns');
  list.replaceChildren(...body.here.map((c) => {
    const li = document.createElement('li');
    li.textContent = `${c.id} since ${new Date(c.connected_at).toLocaleTimeString()}, rooms: ${c.rooms.join(', ') || 'none'}` +
      ` (${c.remote_addr}${c.user_agent ? ', ' + c.user_agent : ''})`;
    return li;
  }));
  setText($('disconnect'), `Disconnect ${body.user}`);
  $('disconnect').disabled = !body.online;
  $('user-result').hidden = false;
}

$('lookup').addEventListener('submit', (e) => {
  e.preventDefault();
  lookup($('user-id').value.trim());
});

$('disconnect').addEventListener('click', async () => {
  const user = lookedUp;
  $('disconnect').disabled = true;
  const { status, body } = await call('/admin/api/disconnect', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user }),
  });
  if (status !== 200) {
    $('disconnect').disabled = false;
    setText($('user-error'), body?.message || `Disconnect failed (HTTP ${status}).`);
    return;
  }
  setText($('user-summary'), `${user}: disconnect sent to every node (close 4003).`);
  $('user-summary').dataset.disconnected = 'true';
});

// An open session (the cookie) goes straight to the dashboard.
call('/admin/api/snapshot').then(({ status, body }) => (status === 200 ? showDash(body) : showLogin()),
  () => showLogin('The server is unreachable.'));
