// The Gearpump dashboard: plain JavaScript over the REST API, no build step.
'use strict';
const API = '/api/v1.0';
const page = document.getElementById('page');
let refresh = () => {};
const series = {}; // chart name -> [[time, value]]

const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const fmt = (n, d = 1) => (n === undefined || n === null || isNaN(n)) ? '-' : Number(n).toLocaleString(undefined, { maximumFractionDigits: d });
const dur = (ms) => { ms = Number(ms) || 0; const s = Math.floor(ms / 1000); return `${Math.floor(s / 3600)}h ${Math.floor(s / 60) % 60}m ${s % 60}s`; };
const time = (ms) => Number(ms) > 0 ? new Date(Number(ms)).toLocaleString() : '-';
// How far a processor's clock is behind the wall clock (for applications whose time is
// wall-clock time; "—" otherwise).
const lag = (t) => (t === undefined || t === null || t === MAX_TIME || Number(t) < 1e11) ? '—' : `${fmt((Date.now() - Number(t)) / 1000, 1)} s`;
// Application time (ms): the start and end of time are "—"; wall-clock times as dates.
const MIN_TIME = '-9223372036854775808', MAX_TIME = '9223372036854775807';
const appTime = (t) => (t === MIN_TIME || t === MAX_TIME || t === undefined) ? '—' : (Number(t) > 1e11 ? `${time(t)} (${esc(t)})` : `${esc(t)} ms`);

// The server wants a login (authentication is on and there is no session).
class LoginNeeded extends Error {}

async function get(path) {
  const r = await fetch(API + path);
  if (r.status === 401) throw new LoginNeeded();
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function send(method, path, body) {
  const headers = typeof body === 'string' ? { 'content-type': 'application/json' } : {};
  const r = await fetch(API + path, { method, body, headers });
  if (r.status === 401) throw new LoginNeeded();
  const json = await r.json();
  if (!r.ok) throw new Error(json.error || r.statusText);
  return json;
}

// Who is logged in, shown in the header with a way out.
async function showWho() {
  const who = document.getElementById('who');
  const w = await (await fetch(API + '/whoami')).json();
  if (!w.authentication || !w.user) { who.innerHTML = ''; return; }
  who.innerHTML = `<span id="who-name">${esc(w.user)} (${esc(w.role)})</span> <button id="logout">Log out</button>`;
  document.getElementById('logout').onclick = async () => {
    await fetch('/logout', { method: 'POST' });
    who.innerHTML = '';
    loginPage();
  };
}

function loginPage(message) {
  page.innerHTML = `<h2>Log in</h2><section><form id="login-form" class="kv">
    <label for="login-user">User</label><input id="login-user" name="user" autocomplete="username" required>
    <label for="login-password">Password</label><input id="login-password" name="password" type="password" autocomplete="current-password" required>
    <span></span><span><button type="submit">Log in</button> <span id="login-error" class="error">${esc(message || '')}</span></span>
  </form></section>`;
  document.getElementById('login-form').onsubmit = async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const r = await fetch('/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: f.user.value, password: f.password.value }) });
    if (!r.ok) { document.getElementById('login-error').textContent = (await r.json()).error || r.statusText; return; }
    await showWho();
    connectEvents();
    route();
  };
}

// A line chart of a series: time along the bottom (clock times at both ends), the value up
// the left in its unit (0 and the maximum shown).
function chart(name, title, unit) {
  const pts = series[name] || [];
  const last = pts.length ? pts[pts.length - 1][1] : undefined;
  const [left, top, w, h] = [52, 6, 240, 92];
  let poly = '', axes = '';
  if (pts.length > 1) {
    const t0 = pts[0][0], t1 = pts[pts.length - 1][0] || t0 + 1;
    const max = Math.max(...pts.map((p) => p[1]), 1e-9);
    poly = pts.map((p) => `${(left + ((p[0] - t0) / Math.max(t1 - t0, 1)) * w).toFixed(1)},${(top + h - (p[1] / max) * h).toFixed(1)}`).join(' ');
    const clock = (t) => new Date(t).toLocaleTimeString();
    axes = `<text class="axis" x="${left - 4}" y="${top + 8}" text-anchor="end">${esc(fmt(max, 1))}</text>
      <text class="axis" x="${left - 4}" y="${top + h}" text-anchor="end">0</text>
      <text class="axis" x="${left - 4}" y="${top + h / 2 + 4}" text-anchor="end">${esc(unit)}</text>
      <text class="axis" x="${left}" y="${top + h + 16}">${esc(clock(t0))}</text>
      <text class="axis" x="${left + w}" y="${top + h + 16}" text-anchor="end">${esc(clock(t1))}</text>`;
  }
  return `<div class="chart" id="chart-${name}"><div>${esc(title)}: <span class="value" id="${name}">${fmt(last, 2)}</span> ${esc(unit)}</div>
    <svg viewBox="0 0 300 120"><line class="axis-line" x1="${left}" y1="${top}" x2="${left}" y2="${top + h}"/><line class="axis-line" x1="${left}" y1="${top + h}" x2="${left + w}" y2="${top + h}"/>
    ${axes}<polyline points="${poly}" fill="none" stroke="#3d7bd9" stroke-width="2"/></svg></div>`;
}

function record(name, value) {
  const s = (series[name] = series[name] || []);
  s.push([Date.now(), value]);
  if (s.length > 300) s.shift();
}

// Cluster: master overview and workers.
async function clusterPage() {
  const [m, workers] = await Promise.all([get('/master'), get('/workers')]);
  const d = m.masterDescription;
  page.innerHTML = `<h2>Cluster</h2>
  <section><h3>Master</h3><div class="kv">
    <b>Leader</b><span>${d.leader ? esc(d.leader.join(":")) : "none (election)"}</span>
    <b>Members</b><span>${esc(d.cluster.map((c) => c.join(':')).join(', '))}</span>
    <b>Status</b><span>${esc(d.masterStatus)}</span>
    <b>Uptime</b><span>${dur(d.aliveFor)}</span>
    <b>Jar store</b><span>${esc(d.jarStore)}</span>
    <b>Logs</b><span>${esc(d.logFile)}</span>
    <b>Home</b><span>${esc(d.homeDirectory)}</span>
    <b>Config</b><span><a href="${API}/config/master">config/master</a></span></div></section>
  <section><h3>Workers</h3><table id="workers"><tr><th>Id</th><th>State</th><th>Slots used</th><th>Executors</th><th>Uptime</th></tr>
  ${workers.map((w) => {
    const used = w.totalSlots - w.availableSlots;
    return `<tr data-worker-id="${w.workerId}"><td><a href="#/worker/${w.workerId}">${w.workerId}</a></td><td>${esc(w.state)}</td>
      <td><span class="bar"><span style="width:${w.totalSlots ? (100 * used) / w.totalSlots : 0}%"></span></span> ${used}/${w.totalSlots}</td>
      <td>${w.executors.length}</td><td>${dur(w.aliveFor)}</td></tr>`;
  }).join('')}</table></section>`;
}

async function workerPage(id) {
  const w = await get(`/workers/${id}`);
  page.innerHTML = `<h2>Worker ${w.workerId}</h2><section><div class="kv">
    <b>State</b><span>${esc(w.state)}</span><b>Path</b><span>${esc(w.actorPath)}</span>
    <b>Slots</b><span>${w.totalSlots - w.availableSlots} used of ${w.totalSlots}</span>
    <b>Uptime</b><span>${dur(w.aliveFor)}</span><b>Logs</b><span>${esc(w.logFile)}</span>
    <b>Config</b><span><a href="${API}/worker/${w.workerId}/config">config</a></span></div></section>
    <section><h3>Executors</h3><table><tr><th>Application</th><th>Executor</th><th>Slots</th></tr>
    ${w.executors.map((e) => `<tr><td><a href="#/app/${e.appId}">${e.appId}</a></td><td>${e.executorId < 0 ? 'AppMaster' : e.executorId}</td><td>${e.slots}</td></tr>`).join('')}
    </table></section>`;
}

// What the last kill, replay or restart said: kept across the page's redraws.
let lastAction = '';

// Applications: table with kill and restart, and the submit form.
async function appsPage() {
  const { appMasters } = await get('/appmasters');
  const form = document.getElementById('submit-form');
  const keep = form ? { args: form.args.value, executors: form.executors.value } : null;
  page.innerHTML = `<h2>Applications</h2><section><table id="apps"><tr><th>Id</th><th>Name</th><th>Status</th><th>Submitted</th><th>Started</th><th>User</th><th></th></tr>
  ${appMasters.map((a) => `<tr data-app-id="${a.appId}"><td><a href="#/app/${a.appId}">${a.appId}</a></td><td>${esc(a.appName)}</td>
    <td class="status status-${esc(a.status)}">${esc(a.status)}</td><td>${time(a.submissionTime)}</td><td>${time(a.startTime)}</td><td>${esc(a.user)}</td>
    <td><a href="${API}/config/app/${a.appId}">config</a>
    ${a.status === 'active' || a.status === 'pending' ? `<button class="kill" data-app="${a.appId}">Kill</button> <button class="replay" data-app="${a.appId}">Replay</button>` : ''}
    <button class="restart" data-app="${a.appId}">Restart</button></td></tr>`).join('')}</table>
  <div id="action-result">${esc(lastAction)}</div></section>
  <section><h3>Submit an application binary</h3><form id="submit-form">
    <input type="file" name="jar" required> Args <input name="args" size="30"> Executors <input name="executors" size="3" value="">
    <button type="submit">Submit</button> <span id="submit-result"></span></form></section>`;
  if (keep) { const f = document.getElementById('submit-form'); f.args.value = keep.args; f.executors.value = keep.executors; }
  const result = (text) => { lastAction = text; document.getElementById('action-result').textContent = text; };
  page.querySelectorAll('button.kill').forEach((b) => b.onclick = async () => {
    try { await send('DELETE', `/appmaster/${b.dataset.app}`); result(`Killed application ${b.dataset.app}.`); } catch (e) { result(e.message); }
    refresh();
  });
  page.querySelectorAll('button.replay').forEach((b) => b.onclick = async () => {
    try { await send('POST', `/appmaster/${b.dataset.app}/replay`); result(`Application ${b.dataset.app} replays from its start clock.`); } catch (e) { result(e.message); }
    refresh();
  });
  page.querySelectorAll('button.restart').forEach((b) => b.onclick = async () => {
    try { const r = await send('POST', `/appmaster/${b.dataset.app}/restart`); result(`Restarted as application ${r.appId}.`); } catch (e) { result(e.message); }
    refresh();
  });
  document.getElementById('submit-form').onsubmit = async (ev) => {
    ev.preventDefault();
    const out = document.getElementById('submit-result');
    out.textContent = 'Submitting…';
    try { const r = await send('POST', '/master/submitapp', new FormData(ev.target)); out.textContent = `Submitted as application ${r.appId}.`; } catch (e) { out.textContent = e.message; }
    refresh();
  };
}

function metricValue(points, name) {
  const p = points.find((x) => x.value.name === name);
  return p ? p.value : undefined;
}

// A streaming application: header, overview, charts, DAG.
async function appPage(id) {
  const [a, errors, metrics, cps] = await Promise.all([get(`/appmaster/${id}?detail=true`), get(`/appmaster/${id}/errors`), get(`/metrics/app/${id}/app${id}?readOption=readLatest`), get(`/appmaster/${id}/checkpoints`)]);
  const pts = metrics.metrics;
  const procs = Object.values(a.processors);
  const sum = (field, key) => procs.reduce((t, p) => t + Number((metricValue(pts, `app${id}.processor${p.id}:${field}`) || {})[key] || 0), 0);
  const mean = (field) => { const v = procs.map((p) => metricValue(pts, `app${id}.processor${p.id}:${field}`)).filter((x) => x && Number(x.count) > 0); return v.length ? v.reduce((t, x) => t + x.mean, 0) / v.length : 0; };
  const sinks = procs.filter((p) => p.kind === 'sink');
  const recv = sinks.reduce((t, p) => t + Number((metricValue(pts, `app${id}.processor${p.id}:receiveThroughput`) || {}).m1 || 0), 0);
  record('send-throughput', sum('sendThroughput', 'm1'));
  record('receive-throughput', recv);
  record('process-time', mean('processTime'));
  record('receive-latency', mean('receiveLatency'));
  const stalling = new Set(a.stallingTasks.map((t) => t.processorId));
  page.innerHTML = `<h2>${esc(a.appName)} <small>(application ${a.appId})</small></h2>
  <section id="app-header"><div class="kv"><b>Status</b><span class="status status-${esc(a.status)}" id="app-status">${esc(a.status)}</span>
    <b>Clock</b><span id="app-clock">${time(a.clock)} (${esc(a.clock)})</span><b>Uptime</b><span>${dur(a.uptime)}</span>
    <b>Start clock</b><span id="app-start-clock">${a.startClock === undefined ? '-' : `${time(a.startClock)} (${esc(a.startClock)})`}</span><b>Restarts</b><span id="app-restarts">${esc(a.restarts ?? 0)}</span>
    <b>User</b><span>${esc(a.user)}</span><b>Submitted</b><span>${time(a.submissionTime)}</span>
    <b>Logs</b><span><a id="appmaster-log" href="#/app/${id}/log/appmaster">AppMaster</a>${a.executors.map((e) => ` · <a href="#/app/${id}/log/${e.executorId}">executor ${e.executorId}</a>`).join('')}</span></div>
    ${errors.error ? `<p class="alert">Last error (${time(errors.time)}): ${esc(errors.error)}</p>` : ''}
    ${pts.length === 0 ? '<p>No metrics: gearpump.metrics.enabled is off.</p>' : ''}</section>
  <section><div class="charts">${chart('send-throughput', 'Send throughput', 'msg/s')}${chart('receive-throughput', 'Receive throughput (sinks)', 'msg/s')}
    ${chart('process-time', 'Processing time (mean)', 'ms')}${chart('receive-latency', 'Receive latency (mean)', 'ms')}</div></section>
  <section class="dag"><h3>DAG</h3>${dag(a, pts, stalling)}</section>
  <section><h3>Processors <small>(DAG version ${esc(a.dagVersion ?? 0)})</small></h3><table id="processors"><tr><th>Id</th><th>Task</th><th>Kind</th><th>Parallelism</th><th>Birth</th><th>Death</th><th>Clock</th><th>Lag</th><th>Received/s</th><th>Sent/s</th><th></th></tr>
    ${procs.map((p) => `<tr data-processor="${p.id}" class="${p.retired ? 'retired' : ''}"><td><a href="#/app/${id}/processor/${p.id}">${p.id}</a></td><td>${esc(p.taskClass)}</td><td>${p.retired ? 'retired' : p.kind}</td><td>${p.parallelism}</td>
    <td>${appTime(p.life.birth)}</td><td>${appTime(p.life.death)}</td><td class="clock">${p.clock === undefined || p.clock === null ? '—' : appTime(p.clock)}</td><td class="lag">${lag(p.clock)}</td>
    <td>${fmt((metricValue(pts, `app${id}.processor${p.id}:receiveThroughput`) || {}).m1)}</td><td>${fmt((metricValue(pts, `app${id}.processor${p.id}:sendThroughput`) || {}).m1)}</td>
    <td>${p.retired || a.status !== 'active' ? '' : `<button class="change" data-processor="${p.id}">Change…</button>`}</td></tr>`).join('')}</table></section>
  ${cps.checkpoints.length === 0 ? '' : `<section><h3>Checkpoints</h3><table id="checkpoints"><tr><th>Time</th><th>Completed</th><th>Duration</th><th>Size</th><th>Per task (bytes, write time)</th></tr>
    ${cps.checkpoints.map((c) => `<tr><td>${appTime(c.time)}</td><td>${time(c.completed)}</td><td>${fmt(c.durationMs, 0)} ms</td><td>${fmt(c.bytes / 1024, 1)} KiB</td>
      <td>${c.tasks.map((t) => `${t.task.processorId}.${t.task.index}: ${fmt(t.bytes, 0)} B, ${fmt(t.tookUs / 1000, 2)} ms`).join('; ')}</td></tr>`).join('')}</table></section>`}
  <section><h3>Last errors</h3>${(errors.recent || []).length === 0 ? '<p>None.</p>' : `<table id="recent-errors"><tr><th>Time</th><th>Task</th><th>Error</th></tr>
    ${errors.recent.map((e) => `<tr><td>${time(e.time)}</td><td>${e.task ? `${e.task.processorId}.${e.task.index}` : 'an executor'}</td><td>${esc(e.error)}</td></tr>`).join('')}</table>`}</section>
  <section><h3>Executors</h3><table id="executors"><tr><th>Id</th><th>Worker</th><th>Status</th><th>Process</th><th>Tasks</th></tr>
    ${a.executors.map((e) => `<tr><td><a href="#/app/${id}/executor/${e.executorId}">${e.executorId}</a></td><td><a href="#/worker/${e.workerId}">${e.workerId}</a></td><td>${esc(e.status)}</td><td>${esc(e.executor)}</td><td>${e.taskCount}</td></tr>`).join('')}</table></section>`;
  page.querySelectorAll('button.change, .node .menu').forEach((b) => b.onclick = (ev) => { ev.preventDefault(); openEditor(a, Number(b.dataset.processor)); });
}

// A processor's menu: change its parallelism, or replace it by a task type the application
// binary registered (REST POST appmaster/<id>/dynamicdag). Outside the page, so that the
// live redraws leave what is typed alone.
function openEditor(a, p) {
  const proc = a.processors[p];
  const box = document.getElementById('editor');
  const types = (a.taskTypes || []).map((t) => `<option${t === proc.taskClass ? ' selected' : ''}>${esc(t)}</option>`).join('');
  box.innerHTML = `<h3>Processor ${p}: ${esc(proc.taskClass.split('::').pop())} ×${proc.parallelism}</h3>
    <form id="rescale-form">Parallelism <input name="parallelism" type="number" min="1" value="${proc.parallelism}" size="4"> <button type="submit">Change parallelism</button></form>
    <form id="replace-form">Replace by <select name="taskClass">${types}</select><br>×<input name="parallelism" type="number" min="1" value="${proc.parallelism}" size="4">
      <label><input name="inheritConf" type="checkbox" checked> keep its config</label> <button type="submit">Replace</button></form>
    <div id="editor-result"></div><button id="editor-close">Close</button>`;
  box.hidden = false;
  const out = document.getElementById('editor-result');
  const change = async (body) => {
    out.textContent = 'Changing…';
    try {
      const r = await send('POST', `/appmaster/${a.appId}/dynamicdag`, JSON.stringify(body));
      out.textContent = `Done: the DAG is at version ${r.version}.`;
    } catch (e) { out.textContent = e.message; out.className = 'error'; return; }
    out.className = '';
    refresh();
  };
  document.getElementById('rescale-form').onsubmit = (ev) => {
    ev.preventDefault();
    change({ rescale: { processorId: p, parallelism: Number(ev.target.parallelism.value) } });
  };
  document.getElementById('replace-form').onsubmit = (ev) => {
    ev.preventDefault();
    const f = ev.target;
    change({ replace: { processorId: p, newProcessor: { taskClass: f.taskClass.value, parallelism: Number(f.parallelism.value) }, inheritConf: f.inheritConf.checked } });
  };
  document.getElementById('editor-close').onclick = () => { box.hidden = true; };
}

// The DAG in layers (processorLevels), node size by throughput, edge width by rate.
function dag(a, pts, stalling) {
  const id = a.appId;
  const byLevel = {};
  Object.entries(a.processorLevels).forEach(([p, l]) => (byLevel[l] = byLevel[l] || []).push(Number(p)));
  const levels = Object.keys(byLevel).map(Number).sort((x, y) => x - y);
  const pos = {};
  levels.forEach((l, i) => byLevel[l].forEach((p, j) => (pos[p] = [80 + i * (600 / Math.max(levels.length - 1, 1)), 40 + (j + 1) * (260 / (byLevel[l].length + 1))])));
  const rate = (p, f) => Number((metricValue(pts, `app${id}.processor${p}:${f}`) || {}).m1 || 0);
  const maxRate = Math.max(1, ...Object.keys(pos).map((p) => Math.max(rate(p, 'receiveThroughput'), rate(p, 'sendThroughput'))));
  // Edge width by rate; colour and label by back-pressure (the share of the upstream tasks'
  // time a downstream task held too many of their messages).
  const pressure = {};
  (a.dag.edges || []).forEach((e) => (pressure[`${e.from}-${e.to}`] = e.backPressure));
  const edges = a.dag.edgeList.map(([from, part, to]) => {
    const [x1, y1] = pos[from], [x2, y2] = pos[to];
    const w = 1 + 7 * (rate(from, 'sendThroughput') / maxRate);
    const bp = pressure[`${from}-${to}`] || 0;
    const colour = bp >= 0.5 ? '#d9534f' : bp >= 0.1 ? '#e0a030' : '#8aa';
    const label = bp > 0 ? `<text class="edge-label" x="${(x1 + x2) / 2}" y="${(y1 + y2) / 2 - 6}">${fmt(bp * 100, 0)}% back-pressure</text>` : '';
    return `<g class="edge-group" data-edge="${from}-${to}"><line class="edge" x1="${x1}" y1="${y1}" x2="${x2}" y2="${y2}" style="stroke:${colour}" stroke-width="${w.toFixed(1)}"><title>${esc(part)}, back-pressure ${fmt(bp * 100, 0)}%</title></line>${label}</g>`;
  }).join('');
  const nodes = a.dag.vertexList.map((p) => {
    const proc = a.processors[p];
    const [x, y] = pos[p];
    const r = 10 + 14 * (Math.max(rate(p, 'receiveThroughput'), rate(p, 'sendThroughput')) / maxRate);
    const name = proc.taskClass.split('::').pop();
    const menu = a.status === 'active' ? `<text class="menu" data-processor="${p}" x="${x - 6}" y="${y - r - 6}"><title>change parallelism or replace</title>⋯</text>` : '';
    return `<g class="node${stalling.has(p) ? ' stalling' : ''}" data-processor="${p}"><a href="#/app/${id}/processor/${p}"><circle cx="${x}" cy="${y}" r="${r.toFixed(1)}"></circle>
      <text x="${x + r + 4}" y="${y + 4}">${esc(name)} ×${proc.parallelism}${stalling.has(p) ? ' (stalling)' : ''}</text></a>${menu}</g>`;
  }).join('');
  return `<svg viewBox="0 0 800 320">${edges}${nodes}</svg>`;
}

async function processorPage(id, p) {
  const [a, metrics] = await Promise.all([get(`/appmaster/${id}?detail=true`), get(`/metrics/app/${id}/app${id}.processor${p}?readOption=readLatest`)]);
  const proc = a.processors[p];
  if (!proc) throw new Error(`application ${id} has no processor ${p}`);
  const pts = metrics.metrics;
  const row = (scope) => {
    const m = (f) => metricValue(pts, `${scope}:${f}`) || {};
    const pt = m('processTime'), rl = m('receiveLatency');
    return `<td>${fmt(m('receiveThroughput').m1)}</td><td>${fmt(m('sendThroughput').m1)}</td>
      <td>${fmt(pt.mean, 4)}</td><td>${fmt(pt.p99, 4)}</td><td>${fmt(rl.median, 3)}</td><td>${fmt(rl.p95, 3)}</td><td>${fmt(rl.p99, 3)}</td><td>${fmt(rl.p999, 3)}</td><td>${fmt(m('pendingMessages').value, 0)}</td><td>${esc(m('blockedTime').value)}</td>`;
  };
  const tasks = [...Array(proc.parallelism).keys()];
  page.innerHTML = `<h2>Processor ${p} of <a href="#/app/${id}">${esc(a.appName)}</a></h2>
  <section><div class="kv"><b>Task class</b><span>${esc(proc.taskClass)}</span><b>Kind</b><span>${proc.kind}</span><b>Parallelism</b><span>${proc.parallelism}</span>
    <b>Description</b><span>${esc(proc.description)}</span><b>Birth</b><span>${appTime(proc.life.birth)}</span><b>Death</b><span>${appTime(proc.life.death)}</span>
    ${proc.retired ? '<b>Retired</b><span>by a DAG change</span>' : ''}</div></section>
  <section><h3>Tasks</h3><table id="tasks"><tr><th>Task</th><th>Received/s</th><th>Sent/s</th><th>Process mean ms</th><th>Process p99 ms</th><th>Latency median ms</th><th>p95</th><th>p99</th><th>p999</th><th>Queued</th><th>Blocked ms</th></tr>
  ${tasks.map((i) => `<tr><td>${i}</td>${row(`app${id}.processor${p}.task${i}`)}</tr>`).join('')}
  <tr><th>All</th>${row(`app${id}.processor${p}`)}</tr></table></section>`;
}

async function executorPage(id, e) {
  const [x, metrics] = await Promise.all([get(`/appmaster/${id}/executor/${e}`), get(`/metrics/app/${id}/app${id}.executor${e}?readOption=readLatest`)]);
  const g = (f) => (metricValue(metrics.metrics, `app${id}.executor${e}:${f}`) || {}).value;
  page.innerHTML = `<h2>Executor ${x.executorId} of <a href="#/app/${id}">application ${id}</a></h2>
  <section><div class="kv"><b>Worker</b><span><a href="#/worker/${x.workerId}">${x.workerId}</a></span><b>Status</b><span>${esc(x.status)}</span>
  <b>Process</b><span>${esc(x.executor)}</span><b>Memory</b><span>${fmt((g('memory.rss') || 0) / 1048576)} MiB</span><b>Threads</b><span>${fmt(g('thread.count'), 0)}</span>
  <b>Config</b><span><a href="${API}/appmaster/${id}/executor/${e}/config">config</a></span><b>Log</b><span><a href="#/app/${id}/log/${e}">the end of its log</a></span></div></section>
  <section><h3>Tasks</h3><table><tr><th>Processor</th><th>Index</th></tr>${x.tasks.map((t) => `<tr><td><a href="#/app/${id}/processor/${t.processorId}">${t.processorId}</a></td><td>${t.index}</td></tr>`).join('')}</table></section>`;
}

// The end of a process's log (the AppMaster's, or an executor's), read on its worker.
async function logPage(id, process) {
  const l = await get(`/appmaster/${id}/logs/${process}`);
  const follow = !document.getElementById('log') || window.innerHeight + window.scrollY >= document.body.scrollHeight - 20;
  page.innerHTML = `<h2>${process === 'appmaster' ? 'AppMaster' : `Executor ${esc(process)}`} log of <a href="#/app/${id}">application ${id}</a></h2>
    <section><div class="kv"><b>File</b><span>${esc(l.path)}</span></div><pre id="log">${esc(l.text)}</pre></section>`;
  if (follow) window.scrollTo(0, document.body.scrollHeight);
}

function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  const routes = [
    [/^$/, () => clusterPage()],
    [/^worker\/\d+$/, () => workerPage(parts[1])],
    [/^apps$/, () => appsPage()],
    [/^app\/\d+$/, () => appPage(parts[1])],
    [/^app\/\d+\/processor\/\d+$/, () => processorPage(parts[1], parts[3])],
    [/^app\/\d+\/executor\/-?\d+$/, () => executorPage(parts[1], parts[3])],
    [/^app\/\d+\/log\/(appmaster|\d+)$/, () => logPage(parts[1], parts[3])],
  ];
  const path = parts.join('/');
  const match = routes.find(([re]) => re.test(path));
  refresh = () => (match ? match[1]() : Promise.reject(new Error(`no page ${path}`))).catch((e) => {
    if (e instanceof LoginNeeded) { if (!document.getElementById('login-form')) loginPage(); return; }
    page.innerHTML = `<p class="alert">${esc(e.message)}</p>`;
  });
  for (const k of Object.keys(series)) delete series[k];
  refresh();
}

window.addEventListener('hashchange', route);
showWho().catch(() => {});
route();
const live = document.getElementById('live');
let events = null;
// Live updates. A refused stream (no login yet) is not retried by the browser: connect
// again after a login, and every few seconds while it is closed.
function connectEvents() {
  if (events && events.readyState !== EventSource.CLOSED) return;
  events = new EventSource(`${API}/events`);
  events.addEventListener('tick', () => {
    live.textContent = `live · ${new Date().toLocaleTimeString()}`;
    // The submit form keeps its chosen file: do not redraw the applications page under it.
    const form = document.getElementById('submit-form');
    if (!(form && form.jar.files.length) && !document.getElementById('login-form')) refresh();
  });
  events.onerror = () => { live.textContent = 'disconnected; retrying…'; };
}
connectEvents();
setInterval(connectEvents, 5000);
