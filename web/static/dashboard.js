// The admin dashboard: sign in with a token, pick rooms, range and granularity, and read the
// report (GET /admin/api/stats/reports) as charts and a table; download the same query as CSV or
// Excel; watch the live online count of the selected rooms (GET /api/rooms/stats, every 2 s).
// Chart is the global of the vendored chart.umd.min.js (loaded before this module).
import { $, el, DEMO_ROOMS, api, ApiError, devToken, tokenClaims, roomLabel, shortId, formatNumber, formatDuration } from './common.js';

const TOKEN_KEY = 'presence.admin.token';
const LIVE_POLL_MS = 2000;
const TABLE_LIMIT = 500;
const PER_ROOM_LINES_MAX = 4; // more rooms than that and the per-room lines become noise
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const COLORS = { peak: '#2563eb', avg: '#16a34a', conn: '#f59e0b', users: '#7c3aed' };
const ROOM_COLORS = ['#0891b2', '#db2777', '#65a30d', '#9333ea'];
const PRESETS = { '24h': [1, 'hour'], '7d': [7, 'hour'], '30d': [30, 'day'], '90d': [90, 'day'], '365d': [365, 'week'] };

const state = { token: null, rooms: [], charts: {}, queryAbort: null, liveTimer: null, lastQuery: null };

// ---- sign-in ----

function showSignIn(message) {
  stopLive();
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $('#app').hidden = true;
  $('#signin').hidden = false;
  $('#sign-out').hidden = true;
  $('#who').textContent = '';
  const box = $('#signin-error');
  box.textContent = message || '';
  box.hidden = !message;
}

// authFailure sends 401 back to the sign-in form and says what a 403 means; other errors are
// the caller's to show. It returns true when it handled err.
function authFailure(err) {
  if (!(err instanceof ApiError)) return false;
  if (err.status === 401) {
    showSignIn(`Signed out: ${err.message}`);
    return true;
  }
  if (err.status === 403) {
    showSignIn('This token is valid but not an admin’s (role "admin" is required).');
    return true;
  }
  return false;
}

async function signIn(token) {
  token = token.trim();
  const box = $('#signin-error');
  box.hidden = true;
  const claims = tokenClaims(token);
  if (!claims) {
    box.textContent = 'That does not look like a token (a JWT has three dot-separated parts).';
    box.hidden = false;
    return;
  }
  $('#signin-button').disabled = true;
  try {
    state.token = token;
    const rooms = await loadRooms(); // checks the token: 401/403 land back here with a message
    if (!state.token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $('#signin').hidden = true;
    $('#app').hidden = false;
    $('#sign-out').hidden = false;
    const exp = claims.exp ? new Date(claims.exp * 1000).toLocaleString() : '?';
    $('#who').textContent = `admin ${shortId(claims.sub)} · until ${exp}`;
    renderRooms(rooms);
    applyPreset();
    await runQuery();
    startLive();
  } catch (err) {
    if (!authFailure(err)) {
      box.textContent = err.message;
      box.hidden = false;
    }
  } finally {
    $('#signin-button').disabled = false;
  }
}

async function loadRooms() {
  const res = await api('/admin/api/rooms', { token: state.token });
  const body = await res.json();
  return body.rooms || [];
}

// ---- the query form ----

function renderRooms(rooms) {
  state.rooms = rooms;
  const list = $('#room-list');
  list.replaceChildren();
  if (rooms.length === 0) {
    list.append(el('div', { class: 'muted', text: 'No rooms with history yet: join a room on the chat page, then reload.' }));
  }
  for (const id of rooms) {
    list.append(el('label', {},
      el('input', { type: 'checkbox', value: id, onchange: () => { updateRoomsNote(); runQuery(); restartLive(); } }),
      el('span', { text: DEMO_ROOMS.find((r) => r.id === id)?.name ?? '' }), el('code', { text: id })));
  }
  updateRoomsNote();
}

// refreshRooms reloads the room list, keeping the ticks.
async function refreshRooms() {
  try {
    const rooms = await loadRooms();
    if (rooms.length === state.rooms.length && rooms.every((r, i) => r === state.rooms[i])) return;
    const ticked = new Set(selectedRooms());
    renderRooms(rooms);
    for (const input of document.querySelectorAll('#room-list input')) input.checked = ticked.has(input.value);
    updateRoomsNote();
  } catch (err) {
    authFailure(err); // anything else: keep the list we have; the report shows its own error
  }
}

function selectedRooms() {
  return [...document.querySelectorAll('#room-list input:checked')].map((i) => i.value);
}

function updateRoomsNote() {
  const n = selectedRooms().length;
  $('#rooms-note').textContent = n === 0 ? `(none ticked: all ${state.rooms.length} rooms)` : `(${n} of ${state.rooms.length})`;
}

function toLocalInput(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function applyPreset() {
  const preset = $('#preset').value;
  $('#custom-range').hidden = preset !== 'custom';
  if (preset === 'custom') {
    if (!$('#start').value) {
      const end = new Date();
      $('#end').value = toLocalInput(end);
      $('#start').value = toLocalInput(new Date(end - 7 * 86400e3));
    }
    return;
  }
  $('#granularity').value = PRESETS[preset][1];
}

// currentQuery returns the report parameters of the form, or throws with what is wrong.
function currentQuery() {
  let start;
  let end;
  const preset = $('#preset').value;
  if (preset === 'custom') {
    start = new Date($('#start').value);
    end = new Date($('#end').value);
    if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime())) throw new Error('Pick both ends of the custom range.');
    if (end <= start) throw new Error('The end of the range must be after its start.');
  } else {
    end = new Date();
    start = new Date(end - PRESETS[preset][0] * 86400e3);
    start.setMinutes(0, 0, 0); // a whole first hour rather than a sliver of one
  }
  const p = new URLSearchParams();
  const rooms = selectedRooms();
  if (rooms.length) p.set('room_ids', rooms.join(','));
  p.set('start_time', start.toISOString());
  p.set('end_time', end.toISOString());
  p.set('granularity', $('#granularity').value);
  return p;
}

function showError(msg) {
  const b = $('#error');
  b.textContent = msg;
  b.hidden = !msg;
}

function showStatus(msg) {
  const b = $('#status');
  b.textContent = msg;
  b.hidden = !msg;
}

async function runQuery(ev) {
  if (ev) {
    ev.preventDefault();
    refreshRooms(); // "Show" also picks up rooms that got history since sign-in
  }
  if (!state.token) return;
  let params;
  try {
    params = currentQuery();
  } catch (err) {
    showError(err.message);
    return;
  }
  if (state.queryAbort) state.queryAbort.abort();
  const abort = new AbortController();
  state.queryAbort = abort;
  showError('');
  showStatus('Loading report…');
  $('#charts').classList.add('loading');
  $('#apply').disabled = true;
  try {
    const res = await api(`/admin/api/stats/reports?${params}`, { token: state.token, signal: abort.signal });
    const report = await res.json();
    state.lastQuery = params;
    render(report, params);
    markStale(false);
    const n = (report.stats || []).length;
    showStatus(`${n} row${n === 1 ? '' : 's'} · ${report.query_duration_ms !== undefined ? `query ${formatNumber(report.query_duration_ms, 1)} ms · ` : ''}generated ${new Date(report.generated_at || Date.now()).toLocaleTimeString()}`);
  } catch (err) {
    if (err.name === 'AbortError') return;
    showStatus('');
    if (authFailure(err)) return;
    const shown = state.lastQuery ? ' The charts below still show the previous query.' : '';
    markStale(Boolean(state.lastQuery));
    const msg = err.message.replace(/\.$/, '');
    showError(err.status === 400 ? `The server refused the query: ${msg}.${shown}` : `Could not load the report: ${msg}.${shown}`);
  } finally {
    if (state.queryAbort === abort) {
      $('#charts').classList.remove('loading');
      $('#apply').disabled = false;
    }
  }
}

// ---- rendering ----

// markStale dims what a failed query left on screen (the tiles' live count stays live).
function markStale(stale) {
  for (const sel of ['#charts', '#table', '#sum-peak', '#sum-conn', '#sum-session']) $(sel).classList.toggle('stale', stale);
}

// bucketLabel shows a bucket in the report's own time zone: its RFC 3339 text already is.
function bucketLabel(ts, granularity) {
  const m = String(ts).match(/^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/);
  if (!m) return String(ts);
  const [, y, mo, d, h, mi] = m;
  const mon = MONTHS[Number(mo) - 1];
  switch (granularity) {
    case 'hour': return `${mon} ${Number(d)} ${h}:${mi}`;
    case 'day': return `${mon} ${Number(d)}`;
    case 'week': return `wk ${mon} ${Number(d)}`;
    case 'month': return `${mon} ${y}`;
    case 'year': return y;
    default: return `${y}-${mo}-${d} ${h}:${mi}`;
  }
}

function bucketCell(ts) {
  const m = String(ts).match(/^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(?::\d{2}(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$/);
  return m ? `${m[1]} ${m[2]}${m[3] && m[3] !== 'Z' ? ' ' + m[3] : ' UTC'}` : String(ts);
}

function makeChart(id, config) {
  if (state.charts[id]) state.charts[id].destroy();
  const reduce = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
  config.options = {
    responsive: true,
    maintainAspectRatio: false,
    animation: reduce ? false : { duration: 300 },
    interaction: { mode: 'index', intersect: false },
    plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
    ...config.options,
  };
  state.charts[id] = new Chart($(`#${id}`), config);
}

function render(report, params) {
  const granularity = params.get('granularity');
  const totals = report.totals || [];
  const stats = report.stats || [];
  const labels = totals.map((t) => bucketLabel(t.time_bucket, granularity));

  // tiles
  const peak = totals.reduce((m, t) => Math.max(m, t.peak_online_count ?? 0), 0);
  const conn = totals.reduce((s, t) => s + (t.total_connections ?? 0), 0);
  // Session length weighted by each bucket's connections: the best the rows allow.
  let w = 0;
  let ws = 0;
  for (const t of totals) {
    if (t.avg_session_duration > 0) {
      const weight = Math.max(t.total_connections || 0, 1);
      w += weight;
      ws += weight * t.avg_session_duration;
    }
  }
  $('#sum-peak').textContent = totals.length ? formatNumber(peak) : '–';
  $('#sum-conn').textContent = totals.length ? formatNumber(conn) : '–';
  $('#sum-session').textContent = w ? formatDuration(ws / w) : '–';

  // online: totals, plus one line per room when there are few
  const online = [
    { label: 'Peak online (all selected)', data: totals.map((t) => t.peak_online_count), borderColor: COLORS.peak, backgroundColor: COLORS.peak, pointRadius: 2 },
    { label: 'Average online (all selected)', data: totals.map((t) => t.avg_online_count), borderColor: COLORS.avg, backgroundColor: COLORS.avg, pointRadius: 2 },
  ];
  const roomIds = [...new Set(stats.map((s) => s.room_id))];
  if (roomIds.length > 1 && roomIds.length <= PER_ROOM_LINES_MAX) {
    const index = new Map(totals.map((t, i) => [t.time_bucket, i]));
    roomIds.forEach((room, k) => {
      const data = new Array(totals.length).fill(null);
      for (const s of stats) if (s.room_id === room && index.has(s.time_bucket)) data[index.get(s.time_bucket)] = s.peak_online_count;
      online.push({ label: `Peak · ${roomLabel(room)}`, data, borderColor: ROOM_COLORS[k], backgroundColor: ROOM_COLORS[k], borderDash: [5, 4], borderWidth: 1.5, pointRadius: 0, spanGaps: true });
    });
  }
  makeChart('chart-online', {
    type: 'line',
    data: { labels, datasets: online },
    options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: 'users' } } } },
  });
  makeChart('chart-activity', {
    type: 'bar',
    data: {
      labels,
      datasets: [
        { label: 'Connections', data: totals.map((t) => t.total_connections), backgroundColor: COLORS.conn },
        { label: 'Unique users', data: totals.map((t) => t.unique_users), backgroundColor: COLORS.users },
      ],
    },
    options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
  });
  const hours = Array.from({ length: 24 }, (_, h) => (report.peak_hours || []).find((p) => p.hour === h) || { hour: h, avg_online_count: 0, peak_online_count: 0 });
  makeChart('chart-hours', {
    type: 'bar',
    data: {
      labels: hours.map((h) => String(h.hour).padStart(2, '0')),
      datasets: [
        { type: 'line', label: 'Peak online', data: hours.map((h) => h.peak_online_count), borderColor: COLORS.peak, backgroundColor: COLORS.peak, pointRadius: 2 },
        { label: 'Average online', data: hours.map((h) => h.avg_online_count), backgroundColor: COLORS.avg },
      ],
    },
    options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } }, x: { title: { display: true, text: 'hour of day' } } } },
  });
  const offset = totals.length ? bucketCell(totals[0].time_bucket).split(' ').pop() : '';
  $('#tz-note').textContent = offset ? `(hours in ${offset})` : '';

  // table
  const body = $('#table tbody');
  body.replaceChildren();
  if (stats.length === 0) {
    body.append(el('tr', {}, el('td', { colspan: 7, class: 'empty', text: 'No presence in this range for these rooms.' })));
  }
  for (const s of stats.slice(0, TABLE_LIMIT)) {
    body.append(el('tr', {},
      el('td', { text: roomLabel(s.room_id), title: s.room_id }),
      el('td', { text: bucketCell(s.time_bucket) }),
      el('td', { text: formatNumber(s.peak_online_count) }),
      el('td', { text: formatNumber(s.avg_online_count, 2) }),
      el('td', { text: formatNumber(s.total_connections) }),
      el('td', { text: formatNumber(s.unique_users) }),
      el('td', { text: formatDuration(s.avg_session_duration) })));
  }
  $('#table-note').textContent = stats.length > TABLE_LIMIT
    ? `(first ${TABLE_LIMIT} of ${formatNumber(stats.length)}: download for all)`
    : `(${formatNumber(stats.length)})`;
}

// ---- downloads ----

// download fetches the report file with the Authorization header (a plain link could not carry
// it) and saves the blob under the server's filename.
async function download(format) {
  if (!state.token) return;
  let params;
  try {
    params = currentQuery();
  } catch (err) {
    showError(err.message);
    return;
  }
  params.set('format', format);
  const button = $(format === 'csv' ? '#dl-csv' : '#dl-xlsx');
  button.disabled = true;
  showError('');
  showStatus(`Preparing the ${format.toUpperCase()} file…`);
  try {
    const res = await api(`/admin/api/stats/reports?${params}`, { token: state.token });
    const blob = await res.blob();
    const name = filenameOf(res.headers.get('Content-Disposition')) || `presence-report.${format}`;
    const url = URL.createObjectURL(blob);
    const a = el('a', { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    showStatus(`Downloaded ${name} (${formatNumber(blob.size / 1024, 1)} KiB).`);
  } catch (err) {
    showStatus('');
    if (authFailure(err)) return;
    showError(err.status === 400 ? `The server refused the download: ${err.message}` : `Download failed: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

function filenameOf(disposition) {
  if (!disposition) return null;
  const star = disposition.match(/filename\*\s*=\s*UTF-8''([^;]+)/i);
  if (star) return decodeURIComponent(star[1].trim());
  const plain = disposition.match(/filename\s*=\s*"?([^";]+)"?/i);
  return plain ? plain[1].trim() : null;
}

// ---- live tile ----

async function pollLive() {
  const all = selectedRooms().length ? selectedRooms() : state.rooms;
  const rooms = all.slice(0, 100); // GET /api/rooms/stats answers for at most 100 rooms
  if (rooms.length === 0) {
    $('#live-online').textContent = '0';
    $('#live-sub').textContent = 'no rooms yet';
    return;
  }
  const p = new URLSearchParams();
  for (const r of rooms) p.append('room_id', r);
  try {
    const res = await api(`/api/rooms/stats?${p}`, { token: state.token });
    const body = await res.json();
    const list = body.rooms || [];
    const users = list.reduce((s, r) => s + (r.online_count || 0), 0);
    const tabs = list.reduce((s, r) => s + (r.session_count || 0), 0);
    const degraded = body.degraded || list.some((r) => r.degraded);
    $('#live-online').textContent = formatNumber(users);
    const some = all.length > rooms.length ? ` (first ${rooms.length} of ${all.length})` : '';
    $('#live-sub').textContent = `${tabs} tab${tabs === 1 ? '' : 's'} in ${list.length} room${list.length === 1 ? '' : 's'}${some} · ${new Date().toLocaleTimeString()}${degraded ? ' · degraded: last known counts' : ''}`;
  } catch (err) {
    if (authFailure(err)) return;
    $('#live-sub').textContent = `live count unavailable: ${err.message}`;
  }
}

function startLive() {
  stopLive();
  const tick = async () => {
    if (!state.token) return;
    if (!document.hidden) await pollLive();
    state.liveTimer = setTimeout(tick, LIVE_POLL_MS);
  };
  tick();
}

function stopLive() {
  clearTimeout(state.liveTimer);
  state.liveTimer = null;
}

function restartLive() {
  if (state.token) startLive();
}

// ---- wiring ----

function init() {
  $('#signin-form').addEventListener('submit', (ev) => { ev.preventDefault(); signIn($('#admin-token').value); });
  $('#dev-admin').addEventListener('click', async () => {
    const box = $('#signin-error');
    box.hidden = true;
    try {
      const minted = await devToken({ name: 'dev-admin', role: 'admin' });
      if (!minted) {
        box.textContent = 'This server does not hand out development tokens (DEV_MODE is off). Paste a token: bin/presenced token --user <uuid> --role admin.';
        box.hidden = false;
        return;
      }
      $('#admin-token').value = minted.token;
      await signIn(minted.token);
    } catch (err) {
      box.textContent = err.message;
      box.hidden = false;
    }
  });
  $('#sign-out').addEventListener('click', () => showSignIn(''));
  $('#query').addEventListener('submit', runQuery);
  $('#preset').addEventListener('change', () => { applyPreset(); if ($('#preset').value !== 'custom') runQuery(); });
  $('#granularity').addEventListener('change', () => runQuery());
  $('#dl-csv').addEventListener('click', () => download('csv'));
  $('#dl-xlsx').addEventListener('click', () => download('xlsx'));
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
  else showSignIn('');
}

init();
