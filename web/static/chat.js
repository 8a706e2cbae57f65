// The chat page: join a room over GET /ws/rooms/:room_id, chat, and watch the room's online count.
// Frames (issue 3): online_stats, message, pong, error from the server; message and ping from us.
// Unknown frame types are ignored, so the server may add some (a hello with the heartbeat interval).
import { $, el, DEMO_ROOMS, isUUID, roomLabel, shortId, devToken, tokenClaims, ApiError, api } from './common.js';

const DEFAULT_HEARTBEAT_MS = 20000;
const MAX_BACKOFF_MS = 15000;
// A ping without any frame back for this long means the socket is dead even if not closed.
// It is measured from the ping, not from the last frame: a background tab whose timers the
// browser throttles to once a minute must not take its own quiet for a dead connection.
const PONG_TIMEOUT_MS = 10000;

// heartbeatFrom reads the heartbeat interval a hello/welcome frame announces, whatever unit its
// field name says (ms, seconds, or a Go duration string such as "20s"); null if none.
export function heartbeatFrom(data) {
  if (!data || typeof data !== 'object') return null;
  const ms = (v, unit) => {
    if (typeof v === 'number' && v > 0) return v * unit;
    if (typeof v === 'string') {
      const m = v.trim().match(/^(\d+(?:\.\d+)?)(ms|s|m)?$/);
      if (m) return Number(m[1]) * ({ ms: 1, s: 1000, m: 60000 }[m[2] || 's'] ?? unit);
    }
    return null;
  };
  const candidates = [
    ['heartbeat_interval_ms', 1], ['ping_interval_ms', 1],
    ['heartbeat_interval_seconds', 1000], ['heartbeat_seconds', 1000], ['ping_interval_seconds', 1000],
    ['heartbeat_interval', 1000], ['ping_interval', 1000], ['heartbeat', 1000],
  ];
  for (const [k, unit] of candidates) {
    const v = ms(data[k], unit);
    if (v) return Math.min(Math.max(v, 1000), 5 * 60000);
  }
  return null;
}

// RoomConnection keeps one WebSocket to a room alive: it reconnects with capped, jittered
// exponential backoff, pings at the announced heartbeat interval and treats a silent socket as
// dead. Every reconnect asks to resume the session the last welcome frame named (?resume=): after
// a server restart (close code 1012) the server keeps the session for RESUME_WINDOW, so the room
// sees no leave and no join; when it cannot (too late, a plain network drop) the welcome says
// resumed: false with a new session id, which the next reconnect uses.
class RoomConnection {
  constructor({ room, token, onFrame, onState }) {
    Object.assign(this, { room, token, onFrame, onState });
    this.attempt = 0;
    this.stopped = false;
    this.heartbeatMs = DEFAULT_HEARTBEAT_MS;
    // Back online, or back to a tab the browser throttled: retry now rather than at the backoff.
    this.onOnline = () => { if (!this.ws && !this.stopped && !document.hidden) this.connectNow(); };
  }

  start() {
    window.addEventListener('online', this.onOnline);
    document.addEventListener('visibilitychange', this.onOnline);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    document.removeEventListener('visibilitychange', this.onOnline);
    clearTimeout(this.retryTimer);
    this.stopHeartbeat();
    if (this.ws) this.ws.close(1000, 'leaving');
    this.ws = null;
    this.sessionId = null; // leaving ends the session: a later join is a new one
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  connectNow() {
    clearTimeout(this.retryTimer);
    this.connect();
  }

  connect() {
    if (this.stopped) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    let url = `${scheme}://${location.host}/ws/rooms/${encodeURIComponent(this.room)}?access_token=${encodeURIComponent(this.token)}`;
    if (this.sessionId) url += `&resume=${encodeURIComponent(this.sessionId)}`;
    this.onState(this.attempt === 0 ? 'connecting' : 'reconnecting', this.attempt === 0 ? 'connecting…' : `reconnecting (attempt ${this.attempt + 1})…`);
    let opened = false;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.lastFrameAt = Date.now();
      this.onState('connected', 'connected');
      this.startHeartbeat();
    };
    ws.onmessage = (ev) => {
      this.lastFrameAt = Date.now();
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        console.warn('chat: a frame that is not JSON', ev.data);
        return;
      }
      if (frame.type === 'welcome' && frame.data && isUUID(frame.data.session_id)) this.sessionId = frame.data.session_id;
      const hb = heartbeatFrom(frame.data) ?? heartbeatFrom(frame);
      if (hb && hb !== this.heartbeatMs) {
        this.heartbeatMs = hb;
        this.startHeartbeat();
      }
      this.onFrame(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return; // an old socket
      this.ws = null;
      this.stopHeartbeat();
      if (this.stopped) return;
      if (!opened) this.diagnose();
      // 1012: the server restarts and keeps the session for a few seconds; the first retry (after
      // 0.25 to 0.5 s, jittered so that a restart's clients do not all come back at once) resumes it.
      else this.retry(ev.code === 1012 ? 'server restarting' : `connection closed (${ev.code}${ev.reason ? ': ' + ev.reason : ''})`);
    };
  }

  // A WebSocket that fails before opening does not tell the page why (a 401 looks like a network
  // error), so ask the REST twin of the endpoint: a rejected token or room stops the retries.
  async diagnose() {
    try {
      await api(`/api/rooms/${encodeURIComponent(this.room)}/stats`, { token: this.token });
      this.retry('could not connect');
    } catch (err) {
      if (err instanceof ApiError && [400, 401, 403, 404].includes(err.status)) {
        this.stopped = true;
        const why = { 401: `token rejected: ${err.message}`, 404: 'this server has no chat endpoint (404)' }[err.status];
        this.onState('error', why || err.message);
        return;
      }
      this.retry('server unreachable');
    }
  }

  retry(why) {
    if (this.stopped) return;
    const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.attempt++;
    this.onState('reconnecting', `${why}; retrying in ${(delay / 1000).toFixed(1)} s`);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.pingSentAt = 0;
    this.heartbeatTimer = setInterval(() => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      const unanswered = this.pingSentAt > 0 && this.lastFrameAt < this.pingSentAt;
      if (unanswered && Date.now() - this.pingSentAt > PONG_TIMEOUT_MS) {
        this.drop('no answer to ping');
        return;
      }
      if (!unanswered) this.pingSentAt = Date.now(); // the oldest unanswered ping counts
      this.send({ type: 'ping' });
    }, this.heartbeatMs);
  }

  // drop gives up on a socket that looks dead without waiting for its close handshake, which
  // a dead connection may never finish; its late close event is then ignored.
  drop(why) {
    const ws = this.ws;
    this.ws = null;
    this.stopHeartbeat();
    try {
      ws.close(4000, why);
    } catch { /* already closing */ }
    this.retry(why);
  }

  stopHeartbeat() {
    clearInterval(this.heartbeatTimer);
  }
}

// ---- the page ----

const state = { conn: null, me: null, room: null };

function setState(s, text) {
  const badge = $('#state');
  const was = badge.dataset.state;
  badge.dataset.state = s;
  badge.textContent = text;
  // Counts seen before a disconnect are only the last known ones: dim them until the snapshot
  // that follows a (re)connect replaces them.
  $('#room-view .side').classList.toggle('stale', s !== 'connected');
  if (s === 'connected' && was === 'reconnecting') addSystem('Reconnected.');
  if (s === 'reconnecting' && was === 'connected') addSystem(`Connection lost (${text}).`);
  if (s === 'error') showRoomBanner(text, 'error');
}

function showRoomBanner(text, kind = 'warn', ms = 0) {
  const b = $('#room-banner');
  b.className = `banner ${kind}`;
  b.textContent = text;
  b.hidden = false;
  clearTimeout(state.bannerTimer);
  if (ms) state.bannerTimer = setTimeout(() => { b.hidden = true; }, ms);
}

function addMessage(data) {
  const list = $('#messages');
  const mine = state.me && data.user_id === state.me.user_id;
  const who = mine ? `${state.me.name || 'you'} (you)` : `user ${shortId(data.user_id)}`;
  const t = data.timestamp ? new Date(data.timestamp) : new Date();
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(el('li', { class: mine ? 'mine' : '' },
    el('span', { class: 'who', text: who, title: data.user_id }),
    el('span', { text: data.text }),
    el('time', { datetime: t.toISOString(), text: t.toLocaleTimeString() })));
  if (atBottom || mine) list.scrollTop = list.scrollHeight;
}

function addSystem(text) {
  const list = $('#messages');
  list.append(el('li', { class: 'system', text }));
  list.scrollTop = list.scrollHeight;
}

function onFrame(frame) {
  switch (frame.type) {
    case 'online_stats': {
      const d = frame.data || {};
      if (d.room_id && d.room_id !== state.room) return;
      $('#online-count').textContent = d.online_count;
      $('#online-sub').textContent = d.online_count === 1 ? 'user' : 'users';
      $('#session-count').textContent = d.session_count;
      const asOf = d.timestamp ? `as of ${new Date(d.timestamp).toLocaleTimeString()}` : '';
      // degraded: the server cannot reach Redis and sends the last counts it knew.
      $('#stats-time').textContent = d.degraded ? `last known ${asOf} (server degraded)` : asOf;
      break;
    }
    case 'message':
      addMessage(frame.data || {});
      break;
    case 'error': {
      const d = frame.data || {};
      showRoomBanner(`The server refused that: ${d.message || d.code || 'error'}`, 'warn', 6000);
      break;
    }
    case 'pong':
      break;
    case 'welcome':
      // A resumed session never left the room: nobody saw this reconnect.
      if (frame.data && frame.data.resumed) addSystem('Session resumed after a server restart.');
      break;
    default:
      // hello/welcome and anything newer: the heartbeat interval was already taken from it.
      console.debug('chat: frame type not shown', frame.type);
  }
}

async function join(ev) {
  ev.preventDefault();
  const errBox = $('#join-error');
  errBox.hidden = true;
  const room = $('#room').value.trim().toLowerCase();
  const name = $('#name').value.trim();
  const pasted = $('#token').value.trim();
  const fail = (msg) => { errBox.textContent = msg; errBox.hidden = false; };
  if (!isUUID(room)) return fail('The room id must be a UUID (or pick a demo room).');
  $('#join-button').disabled = true;
  try {
    let me;
    if (pasted) {
      const claims = tokenClaims(pasted);
      if (!claims || !claims.sub) return fail('That does not look like a token (a JWT has three dot-separated parts).');
      me = { token: pasted, user_id: claims.sub, name };
    } else {
      const minted = await devToken(name ? { name } : undefined);
      if (!minted) {
        $('#token-details').open = true;
        return fail('This server does not hand out development tokens (DEV_MODE is off). Paste a token: bin/presenced token --user <uuid>.');
      }
      me = { token: minted.token, user_id: minted.user_id, name };
    }
    localStorage.setItem('presence.chat.last', JSON.stringify({ room, name }));
    enterRoom(room, me);
  } catch (err) {
    fail(err.message);
  } finally {
    $('#join-button').disabled = false;
  }
}

function enterRoom(room, me) {
  state.room = room;
  state.me = me;
  $('#join').hidden = true;
  $('#room-view').hidden = false;
  $('#room-banner').hidden = true;
  $('#room-name').textContent = roomLabel(room);
  $('#who').textContent = `you: ${me.name ? me.name + ' · ' : ''}${shortId(me.user_id)}`;
  $('#messages').replaceChildren();
  $('#online-count').textContent = '–';
  $('#session-count').textContent = '–';
  addSystem(`Joined ${roomLabel(room)} as ${me.name || 'user'} (${shortId(me.user_id)}).`);
  history.replaceState(null, '', `#room=${room}`);
  state.conn = new RoomConnection({ room, token: me.token, onFrame, onState: setState });
  state.conn.start();
  $('#text').focus();
}

function leave() {
  if (state.conn) state.conn.stop();
  state.conn = null;
  setState('idle', 'not connected');
  $('#room-view').hidden = true;
  $('#join').hidden = false;
  $('#who').textContent = '';
  history.replaceState(null, '', location.pathname);
}

function send(ev) {
  ev.preventDefault();
  const input = $('#text');
  const text = input.value.trim();
  if (!text || !state.conn) return;
  if (state.conn.send({ type: 'message', text })) {
    input.value = '';
  } else {
    showRoomBanner('Not connected: the message was not sent.', 'warn', 4000);
  }
}

function init() {
  const demo = $('#demo-rooms');
  for (const r of DEMO_ROOMS) {
    demo.append(el('button', { type: 'button', class: 'secondary', text: r.name, title: r.id, onclick: () => { $('#room').value = r.id; $('#name').focus(); } }));
  }
  try {
    const last = JSON.parse(localStorage.getItem('presence.chat.last') || 'null');
    if (last) { $('#room').value = last.room || ''; $('#name').value = last.name || ''; }
  } catch { /* ignore */ }
  const m = location.hash.match(/room=([0-9a-f-]{36})/i);
  if (m) $('#room').value = m[1];
  if (!$('#room').value) $('#room').value = DEMO_ROOMS[0].id;
  $('#join-form').addEventListener('submit', join);
  $('#compose').addEventListener('submit', send);
  $('#leave').addEventListener('click', leave);
}

init();
