// Shared by the chat page and the dashboard: the demo rooms, talking to the API, small helpers.

// Fixed demo rooms so that two people (or two tabs) find each other without copying a UUID.
export const DEMO_ROOMS = [
  { id: '00000000-0000-4000-8000-000000000001', name: 'Lobby' },
  { id: '00000000-0000-4000-8000-000000000002', name: 'Support' },
  { id: '00000000-0000-4000-8000-000000000003', name: 'Random' },
];

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUUID(s) {
  return UUID_RE.test(String(s).trim());
}

// roomLabel names a room for people: the demo name, or the first 8 characters of its id.
export function roomLabel(id) {
  const demo = DEMO_ROOMS.find((r) => r.id === id);
  return demo ? `${demo.name} (${id.slice(0, 8)})` : `room ${id.slice(0, 8)}`;
}

export function shortId(id) {
  return String(id || '').slice(0, 8);
}

// ApiError carries the HTTP status and the server's {"error":{"code","message"}}.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// api fetches a JSON endpoint; with a token it sends Authorization: Bearer. Non-2xx answers
// throw ApiError with the server's message when there is one.
export async function api(path, { token, method = 'GET', body, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', 'The server cannot be reached. Is it running?');
  }
  if (res.ok) return res;
  throw await apiErrorOf(res);
}

export async function apiErrorOf(res) {
  let code = `http_${res.status}`;
  let message = `${res.status} ${res.statusText}`;
  try {
    const j = await res.json();
    if (j && j.error) {
      code = j.error.code || code;
      message = j.error.message || message;
    }
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(res.status, code, message);
}

// devToken asks POST /dev/token (only with DEV_MODE=1) for a token; null when it does not exist.
export async function devToken(body) {
  try {
    const res = await api('/dev/token', { method: 'POST', body });
    return await res.json();
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) return null;
    throw err;
  }
}

// tokenClaims reads a JWT's payload without checking it (the server does): for showing who and
// until when, never for deciding anything.
export function tokenClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
  } catch {
    return null;
  }
}

export function $(sel, root = document) {
  return root.querySelector(sel);
}

// el builds an element: el('li', {class: 'x', text: 'hi'}, child...). Text only, never HTML.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

export function formatNumber(n, digits = 0) {
  if (n === undefined || n === null || Number.isNaN(n)) return '–';
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function formatDuration(seconds) {
  if (seconds === undefined || seconds === null) return '–';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
