// Browser tests (issue 5): the chat page and the dashboard in headless Chromium against the real
// service. The chat test's joins and leaves are also the dashboard test's history: they go through
// the WebSocket hub, the event collector and the continuous aggregates like any real traffic.
// Screenshots land in test-artifacts/ (git-ignored).
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFile, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { startService, launchBrowser, watchConsole, shot, waitFor, ARTIFACTS } from './harness.mjs';

let svc;
let browser;
const room = randomUUID(); // a room of this run only
const errors = [];

// A low REPORT_MAX_POINTS lets the dashboard show a real 400 from the server (a year by hour);
// a short PRESENCE_TTL makes the server announce a 2 s heartbeat, which the ping test watches.
const SERVICE_ENV = { REPORT_MAX_POINTS: '2000', PRESENCE_TTL: '6s', SWEEP_INTERVAL: '1s' };

before(async () => {
  await rm(join(ARTIFACTS, 'presenced.log'), { force: true });
  svc = await startService(SERVICE_ENV);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await svc?.stop();
});

// Every context a test opens is closed after it, even when it fails: a page left in the room
// would change the counts the next tests expect.
const contexts = new Set();
afterEach(async () => {
  for (const ctx of contexts) await ctx.close().catch(() => {});
  contexts.clear();
});

async function newPage(viewport = { width: 1280, height: 800 }) {
  // Reduced motion: the dashboard then draws charts without animation, so screenshots are final.
  const ctx = await browser.newContext({ viewport, baseURL: svc.url, reducedMotion: 'reduce' });
  contexts.add(ctx);
  const page = await ctx.newPage();
  watchConsole(page, errors);
  return { ctx, page };
}

async function joinChat(page, name) {
  await page.goto(`/#room=${room}`);
  await page.fill('#name', name);
  await shot(page, 'chat-join-form.png');
  await page.click('#join-button');
  await page.waitForSelector('#state[data-state=connected]', { timeout: 10000 });
}

function countIs(page, sel, want, timeout) {
  return page.waitForFunction(([s, w]) => document.querySelector(s)?.textContent === w, [sel, String(want)], { timeout, polling: 20 });
}

test('chat: two browsers in one room see 2 online within a second, then 1 after one leaves', async () => {
  const a = await newPage();
  const b = await newPage({ width: 390, height: 844 }); // a phone
  await joinChat(a.page, 'Ada');
  await countIs(a.page, '#online-count', 1, 2000);

  await joinChat(b.page, 'Grace');
  const joined = Date.now();
  await Promise.all([countIs(a.page, '#online-count', 2, 1000), countIs(b.page, '#online-count', 2, 1000)]);
  const seen = Date.now() - joined;
  assert.ok(seen < 1000, `count 2 seen after ${seen} ms`);
  assert.equal(await a.page.textContent('#session-count'), '2');

  // A real chat: a message from one shows up on the other, under the sender's short id.
  await b.page.fill('#text', 'hello from Grace');
  await b.page.click('#send');
  await a.page.waitForSelector('#messages li:has-text("hello from Grace")', { timeout: 2000 });
  const line = await a.page.textContent('#messages li:has-text("hello from Grace")');
  assert.match(line, /^user [0-9a-f]{8}/, 'others are shown by a short user id');
  await a.page.fill('#text', 'hi Grace');
  await a.page.press('#text', 'Enter');
  await b.page.waitForSelector('#messages li:has-text("hi Grace")', { timeout: 2000 });
  await shot(a.page, 'chat-desktop-two-online.png');
  await shot(b.page, 'chat-phone-two-online.png');

  await b.ctx.close(); // the tab goes away: the WebSocket closes
  const left = Date.now();
  await countIs(a.page, '#online-count', 1, 1000);
  assert.ok(Date.now() - left < 1000);
  assert.equal(await a.page.textContent('#session-count'), '1');

  // A second tab of the same user: still one user, two tabs.
  const tab2 = await a.ctx.newPage();
  watchConsole(tab2, errors);
  await joinChat(tab2, 'Ada');
  await Promise.all([countIs(a.page, '#session-count', 2, 1000), countIs(tab2, '#session-count', 2, 1000)]);
  assert.equal(await a.page.textContent('#online-count'), '1');
  await shot(tab2, 'chat-second-tab.png');

  // Leaving through the button closes the socket the same way.
  await tab2.click('#leave');
  await countIs(a.page, '#session-count', 1, 1000);
  await a.ctx.close();
  assert.deepEqual(errors, []);
});

test('chat: pings at the interval the welcome frame announces', async () => {
  const { ctx, page } = await newPage();
  const sent = [];
  const received = [];
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => sent.push({ at: Date.now(), frame: JSON.parse(f.payload) }));
    ws.on('framereceived', (f) => received.push(JSON.parse(f.payload)));
  });
  await joinChat(page, 'Pinger');
  const welcome = received.find((f) => f.type === 'welcome');
  assert.ok(welcome, 'a welcome frame arrived');
  const every = welcome.data.heartbeat_interval_ms;
  assert.ok(every > 0 && every <= 3000, `announced heartbeat ${every} ms (PRESENCE_TTL is 6 s)`);
  await waitFor('two pings', () => sent.filter((s) => s.frame.type === 'ping').length >= 2, 3 * every);
  const pings = sent.filter((s) => s.frame.type === 'ping');
  const gap = pings[1].at - pings[0].at;
  assert.ok(gap > every * 0.8 && gap < every * 1.5, `pings ${gap} ms apart, announced ${every} ms`);
  await waitFor('a pong', () => received.some((f) => f.type === 'pong'), 2000);
  await ctx.close();
});

test('chat: a connection that stops answering pings is dropped and made again', async () => {
  const { ctx, page } = await newPage();
  // A muted connection still carries the page's frames to the server, but nothing comes back:
  // a half-dead connection. Only the connections open when muting starts are muted.
  const connections = [];
  await page.routeWebSocket(/\/ws\/rooms\//, (ws) => {
    const conn = { muted: false };
    connections.push(conn);
    const server = ws.connectToServer();
    ws.onMessage((m) => server.send(m));
    server.onMessage((m) => { if (!conn.muted) ws.send(m); });
  });
  await joinChat(page, 'Muted');
  const before = connections.length;
  for (const c of connections) c.muted = true;
  // The reconnecting state may last only the first backoff (~0.3 s); the chat log keeps it.
  await page.waitForSelector('#messages li.system:has-text("no answer to ping")', { timeout: 20000 });
  await page.waitForSelector('#state[data-state=connected]', { timeout: 10000 });
  assert.ok(connections.length > before, 'a new connection was made');
  await countIs(page, '#online-count', 1, 2000);
  await ctx.close();
});

test('chat: a bad token is shown as an error, not retried forever', async () => {
  const { ctx, page } = await newPage();
  await page.goto(`/#room=${room}`);
  await page.click('summary');
  await page.fill('#token', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bad');
  await page.click('#join-button');
  await page.waitForSelector('#state[data-state=error]', { timeout: 5000 });
  assert.match(await page.textContent('#state'), /token rejected/);
  await shot(page, 'chat-bad-token.png');
  await ctx.close();
  // The browser logs the refused handshake (401) and the refused REST check: expected here.
  errors.length = 0;
});

test('dashboard: signs in, draws charts with data, live count, downloads CSV and Excel', async () => {
  const { ctx, page } = await newPage({ width: 1280, height: 900 });
  await page.goto('/admin/');
  await page.click('#dev-admin');
  await page.waitForSelector('#app:not([hidden])', { timeout: 10000 });

  // The chat test's room is among the rooms with history (the aggregates' real-time part).
  await waitFor(`room ${room} in the picker`, async () => {
    if (await page.$(`#room-list input[value="${room}"]`)) return true;
    await page.reload(); // signs in again from session storage, loads the rooms again
    await page.waitForSelector('#app:not([hidden])', { timeout: 10000 });
    return false;
  }, 15000);
  await page.check(`#room-list input[value="${room}"]`);
  await page.waitForFunction((r) => [...document.querySelectorAll('#table tbody td')].some((td) => td.title === r), room, { timeout: 15000 });

  const charts = await page.evaluate(() => Object.fromEntries(['chart-online', 'chart-activity', 'chart-hours'].map((id) => {
    const c = Chart.getChart(id);
    const canvas = document.getElementById(id);
    const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < px.length; i += 4) if (px[i] > 0) painted++;
    return [id, { datasets: c.data.datasets.map((d) => ({ label: d.label, data: d.data })), labels: c.data.labels.length, painted }];
  })));
  const max = (id, k) => Math.max(...charts[id].datasets[k].data.map((v) => v ?? 0));
  assert.ok(charts['chart-online'].labels > 0, 'online chart has buckets');
  assert.ok(max('chart-online', 0) >= 2, `peak online >= 2 (two users were in the room): ${JSON.stringify(charts['chart-online'].datasets[0].data)}`);
  assert.ok(max('chart-activity', 0) >= 3, 'at least 3 connections (Ada, Grace, Ada again)');
  assert.ok(max('chart-activity', 1) >= 2, 'at least 2 unique users');
  assert.ok(max('chart-hours', 0) >= 2, 'peak hours show the peak');
  for (const [id, c] of Object.entries(charts)) assert.ok(c.painted > 1000, `${id} canvas is drawn (${c.painted} pixels)`);
  assert.ok(Number((await page.textContent('#sum-peak')).replace(/\D/g, '')) >= 2);

  // The live tile follows the room without a reload.
  const chat = await newPage();
  await joinChat(chat.page, 'Live');
  await countIs(page, '#live-online', 1, 5000);
  await shot(page, 'dashboard-desktop.png', { fullPage: true });
  await chat.ctx.close();
  await countIs(page, '#live-online', 0, 5000);

  // CSV: fetched with the token, saved as a file; its rows are the report's.
  const [csv] = await Promise.all([page.waitForEvent('download'), page.click('#dl-csv')]);
  assert.match(csv.suggestedFilename(), /\.csv$/);
  const text = await readFile(await csv.path(), 'utf8');
  await writeFile(join(ARTIFACTS, csv.suggestedFilename()), text);
  const lines = text.trim().split(/\r?\n/);
  assert.match(lines[0], /room_id/);
  assert.ok(lines.slice(1).some((l) => l.includes(room)), 'the CSV has the room');
  const rows = await page.$$eval('#table tbody tr', (trs) => trs.length);
  assert.equal(lines.length - 1, rows, 'one CSV row per table row');

  const [xlsx] = await Promise.all([page.waitForEvent('download'), page.click('#dl-xlsx')]);
  assert.match(xlsx.suggestedFilename(), /\.xlsx$/);
  const bytes = await readFile(await xlsx.path());
  assert.equal(bytes.subarray(0, 2).toString(), 'PK', 'an XLSX is a zip');

  // A custom range: the last three hours by hour.
  await page.selectOption('#preset', 'custom');
  await page.evaluate(() => {
    const local = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
    const now = Date.now();
    document.querySelector('#start').value = local(new Date(now - 3 * 3600e3));
    document.querySelector('#end').value = local(new Date(now + 60e3));
  });
  await page.selectOption('#granularity', 'hour');
  await page.click('#apply');
  await page.waitForFunction(() => /^[3-5] rows/.test(document.querySelector('#status').textContent), null, { timeout: 10000 });
  const customPeak = await page.evaluate(() => Math.max(...Chart.getChart('chart-online').data.datasets[0].data));
  assert.ok(customPeak >= 2, `peak in the custom range: ${customPeak}`);
  assert.deepEqual(errors, []);

  // A query the server refuses: its message is shown (and the browser logs the 400).
  await page.selectOption('#preset', '365d');
  await page.selectOption('#granularity', 'hour');
  await page.waitForSelector('#error:not([hidden])', { timeout: 10000 });
  assert.match(await page.textContent('#error'), /refused/);
  await shot(page, 'dashboard-error-400.png');
  assert.ok(errors.every((e) => /status of 400/.test(e)), errors.join('\n'));
  errors.length = 0;

  // What the dashboard did is in the audit trail, downloads included, under the dev admin's id,
  // with the browser's user agent: the page goes through the same audited endpoints as any client.
  const adminId = await page.evaluate(() => JSON.parse(atob(sessionStorage.getItem('presence.admin.token').split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).sub);
  const auditor = await (await fetch(`${svc.url}/dev/token`, { method: 'POST', body: JSON.stringify({ name: 'auditor', role: 'admin' }) })).json();
  const audit = await (await fetch(`${svc.url}/admin/api/audit?limit=1000`, { headers: { Authorization: `Bearer ${auditor.token}` } })).json();
  const mine = audit.entries.filter((e) => e.admin_id === adminId);
  for (const [action, status] of [['rooms_list', 200], ['stats_report', 200], ['stats_report', 400], ['stats_report_csv', 200], ['stats_report_xlsx', 200]]) {
    const row = mine.find((e) => e.action === action && e.status === status);
    assert.ok(row, `an audit row ${action} ${status}`);
    assert.match(row.user_agent, /Chrome/);
  }
  assert.ok(mine.some((e) => e.action === 'stats_report_csv' && JSON.stringify(e.parameters).includes(room)), 'the CSV row names the room');

  // A phone.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.selectOption('#preset', '24h');
  await page.waitForSelector('#error', { state: 'hidden', timeout: 10000 });
  await page.waitForFunction(() => !document.querySelector('#charts').classList.contains('loading'));
  await shot(page, 'dashboard-phone.png', { fullPage: true });
  await page.locator('#charts').scrollIntoViewIfNeeded();
  await shot(page, 'dashboard-phone-charts.png');
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), 'no sideways scrolling on a phone');
  await ctx.close();
  assert.deepEqual(errors, []);
});

test('dashboard: a user token is told it is not an admin; a bad token goes back to sign-in', async () => {
  const { ctx, page } = await newPage();
  const res = await fetch(`${svc.url}/dev/token`, { method: 'POST', body: JSON.stringify({ name: 'not-an-admin' }) });
  const { token } = await res.json();
  await page.goto('/admin/');
  await page.fill('#admin-token', token);
  await page.click('#signin-button');
  await page.waitForSelector('#signin-error:not([hidden])');
  assert.match(await page.textContent('#signin-error'), /not an admin/);
  await shot(page, 'dashboard-not-admin.png');

  await page.fill('#admin-token', `${token.slice(0, -4)}xxxx`);
  await page.click('#signin-button');
  await page.waitForFunction(() => /Signed out/.test(document.querySelector('#signin-error').textContent));
  assert.equal(await page.isHidden('#app'), true);
  await ctx.close();
  errors.length = 0; // the refused requests are logged by the browser, as they should be
});

test('without DEV_MODE both pages ask for a pasted token', async () => {
  // The server's 404 for POST /dev/token without DEV_MODE is tested in Go (handlers/web_test.go);
  // here the browser gets the same answer to see what the pages make of it.
  const { ctx, page } = await newPage();
  await ctx.route('**/dev/token', (route) => route.fulfill({
    status: 404, contentType: 'application/json',
    body: JSON.stringify({ error: { code: 'not_found', message: 'no route POST /dev/token' } }),
  }));
  await page.goto(`/#room=${room}`);
  await page.fill('#name', 'NoDev');
  await page.click('#join-button');
  await page.waitForSelector('#join-error:not([hidden])');
  assert.match(await page.textContent('#join-error'), /DEV_MODE is off/);
  assert.equal(await page.getAttribute('#token-details', 'open'), '');
  await shot(page, 'chat-no-dev-mode.png');

  await page.goto('/admin/');
  await page.click('#dev-admin');
  await page.waitForSelector('#signin-error:not([hidden])');
  assert.match(await page.textContent('#signin-error'), /DEV_MODE is off/);
  await ctx.close();
  errors.length = 0; // the browser logs the 404s
});

test('chat: reconnects by itself when the service comes back', async () => {
  const { ctx, page } = await newPage({ width: 390, height: 844 });
  await joinChat(page, 'Phoenix');
  await countIs(page, '#online-count', 1, 2000);
  await svc.stop();
  await page.waitForSelector('#state[data-state=reconnecting]', { timeout: 5000 });
  await shot(page, 'chat-reconnecting.png');
  svc = await startService(SERVICE_ENV, svc.port);
  await page.waitForSelector('#state[data-state=connected]', { timeout: 30000 });
  await countIs(page, '#online-count', 1, 2000);
  await page.waitForSelector('#messages li.system:has-text("Reconnected")');
  await page.fill('#text', 'back again');
  await page.click('#send');
  await page.waitForSelector('#messages li.mine:has-text("back again")', { timeout: 2000 });
  await shot(page, 'chat-reconnected.png');
  await ctx.close();
  // While the service was down the browser logged refused connections: expected here.
  errors.length = 0;
});

test('chat: a server restart is resumed: same session, no one left the room', async () => {
  // One key prefix before and after the restart (startService picks a new one otherwise), and a
  // PRESENCE_TTL that lets RESUME_WINDOW keep its default 10 s.
  const env = { ...SERVICE_ENV, PRESENCE_TTL: '30s', REDIS_KEY_PREFIX: `e2e-resume-${randomUUID().slice(0, 8)}:` };
  await svc.stop();
  svc = await startService(env, svc.port);
  const resumeRoom = randomUUID();
  const pages = [];
  for (const name of ['Ada', 'Grace']) {
    const { page } = await newPage({ width: 390, height: 844 });
    await page.goto(`/#room=${resumeRoom}`);
    await page.fill('#name', name);
    await page.click('#join-button');
    await page.waitForSelector('#state[data-state=connected]', { timeout: 10000 });
    pages.push(page);
  }
  for (const page of pages) await countIs(page, '#online-count', 2, 5000);
  await svc.stop(); // SIGTERM: the sessions are detached, the sockets closed with 1012
  svc = await startService(env, svc.port);
  for (const page of pages) {
    // Back online at once rather than at the backoff's next step: well within the window.
    await page.evaluate(() => window.dispatchEvent(new Event('online')));
    await page.waitForSelector('#messages li.system:has-text("Session resumed")', { timeout: 10000 });
    await countIs(page, '#online-count', 2, 2000);
  }
  await shot(pages[0], 'chat-resumed.png');
  // Back to the suite's settings for what follows.
  await svc.stop();
  svc = await startService(SERVICE_ENV, svc.port);
  errors.length = 0; // refused connections while the service was down
});
