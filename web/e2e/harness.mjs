// Test harness: the real service (bin/presenced on a free port, against the throw-away Redis and
// TimescaleDB of `dev/services.sh test`) and Debian's headless Chromium through playwright-core.
import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdirSync, createWriteStream, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const ARTIFACTS = join(ROOT, 'test-artifacts');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

export async function waitFor(what, fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      if (await fn()) return;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

// One secret per test run, so that a restarted service still accepts the pages' tokens.
const JWT_SECRET = randomBytes(24).toString('hex');

// startService migrates the test database and runs `presenced serve` with DEV_MODE=1, on port
// (a free one when 0). It returns { url, port, stop() }; the service's log is appended to
// test-artifacts/presenced.log.
export async function startService(extraEnv = {}, port = 0) {
  // The local engine of `dev/services.sh test`, also when the Go tests use a real server
  // (TEST_DATABASE_URL): see "Real TimescaleDB servers" in docs/operations.md.
  const dbURL = process.env.TEST_TSDB_URL;
  const redisURL = process.env.TEST_REDIS_URL;
  if (!dbURL || !redisURL) {
    throw new Error('TEST_TSDB_URL and TEST_REDIS_URL are not set: run `make test-browser` (or dev/services.sh test ...)');
  }
  const bin = process.env.PRESENCED_BIN || join(ROOT, 'bin/presenced');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`make build\` first`);
  mkdirSync(ARTIFACTS, { recursive: true });
  port = port || (await freePort());
  const env = {
    ...process.env,
    JWT_SECRET,
    DEV_MODE: '1',
    HTTP_ADDR: `127.0.0.1:${port}`,
    DATABASE_URL: dbURL,
    REDIS_URL: redisURL,
    REDIS_KEY_PREFIX: `e2e-${randomBytes(4).toString('hex')}:`,
    SPOOL_DIR: '', // no spool files from a test run
    EVENT_FLUSH_INTERVAL: '200ms',
    LOG_FORMAT: 'json',
    ...extraEnv,
  };
  execFileSync(bin, ['migrate', 'up'], { env, cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'], timeout: 120000 });
  const log = createWriteStream(join(ARTIFACTS, 'presenced.log'), { flags: 'a' });
  const child = spawn(bin, ['serve'], { env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  let exited = null;
  const exit = new Promise((res) => child.once('exit', (code, signal) => { exited = { code, signal }; res(exited); }));
  const url = `http://127.0.0.1:${port}`;
  await waitFor('the service to be ready', async () => {
    if (exited) throw new Error(`presenced exited (${JSON.stringify(exited)}): see test-artifacts/presenced.log`);
    const res = await fetch(`${url}/readyz`);
    return res.ok;
  }, 30000);
  return {
    url,
    port,
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 20000);
      await exit;
      clearTimeout(t);
    },
  };
}

export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: dev/services.sh chromium installs Debian's chromium`);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60000 });
}

// watchConsole collects a page's errors (script errors, CSP violations, failed loads) so that
// a test can assert there were none.
export function watchConsole(page, sink) {
  page.on('pageerror', (err) => sink.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') sink.push(`console: ${msg.text()}`);
  });
  return sink;
}

export function shot(page, name, opts = {}) {
  return page.screenshot({ path: join(ARTIFACTS, name), ...opts });
}
