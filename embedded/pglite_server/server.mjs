// PGlite + TimescaleDB (WASM) served over the PostgreSQL wire protocol on loopback.
//
// Why: TimescaleDB has no PyPI/npm native build we may use, so the Timescale-specific SQL
// (hypertables, time_bucket, continuous aggregates, jobs) is proven against this WASM build.
// It is NOT an ingest database: one session at a time, no COPY FROM STDIN (it traps the WASM
// backend; this server then exits with code 3), background jobs never run by themselves
// (use CALL run_job(id)). See README "Services".
//
// PGlite is one single-user backend, so exactly one client session is attached at a time.
// Unlike pglite-socket's own server (which *rejects* a connection while the previous one is
// still closing, so a quick reconnect fails), further connections wait in a FIFO queue and
// are attached when the current session ends; a waiting client that gives up is dropped.
//
// Usage: node server.mjs --port 5433 [--host 127.0.0.1] [--data-dir DIR]
// Env fallbacks: PGLITE_PORT, PGLITE_HOST, PGLITE_DATA_DIR.
// Prints exactly one line "PGLITE READY host:port" on stdout once it accepts connections.
import { parseArgs } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import { timescaledb } from '@electric-sql/pglite/timescaledb';
import { createServer } from 'node:net';
import { PGLiteSocketHandler } from '@electric-sql/pglite-socket';

function fail(message) {
  process.stderr.write(`pglite: ${message}\n`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      'data-dir': { type: 'string' },
    },
    strict: true,
  }));
} catch (err) {
  fail(err.message);
}

const host = values.host ?? process.env.PGLITE_HOST ?? '127.0.0.1';
const port = Number(values.port ?? process.env.PGLITE_PORT ?? '');
const dataDir = values['data-dir'] ?? process.env.PGLITE_DATA_DIR ?? undefined;
if (!Number.isInteger(port) || port < 1 || port > 65535) fail('--port must be an integer 1..65535');

const db = await PGlite.create({ dataDir, extensions: { timescaledb } });
await db.exec("CREATE EXTENSION IF NOT EXISTS timescaledb; LOAD 'timescaledb';");

// The handler's query queue: one attached session, so queries simply run one by one; a
// session that ends inside a transaction is rolled back so the next one starts clean.
const queryQueue = {
  enqueue: (_handlerId, message) => db.runExclusive(() => db.execProtocolRaw(message)),
  clearQueueForHandler: () => {},
  clearTransactionIfNeeded: async () => {
    if (db.isInTransaction()) await db.exec('ROLLBACK');
  },
  getQueueLength: () => 0,
};

const waiting = [];
let current = null;
let stopping = false;

function attachNext() {
  if (current !== null || stopping) return;
  let socket;
  do socket = waiting.shift();
  while (socket !== undefined && socket.destroyed);
  if (socket === undefined) return;
  const handler = new PGLiteSocketHandler({ queryQueue, closeOnDetach: true });
  current = handler;
  const release = () => {
    if (current !== handler) return;
    current = null;
    setImmediate(attachNext);
  };
  handler.addEventListener('close', release);
  handler.addEventListener('error', (event) => {
    release();
    void checkBackend(event.detail);
  });
  handler.attach(socket).catch((err) => {
    process.stderr.write(`pglite: attach failed: ${err}\n`);
    socket.destroy();
    release();
  });
}

// Some protocol flows (COPY FROM STDIN) trap the WASM backend ("unreachable"): every later
// query fails or hangs. Exit loudly then, so `stackwatch services status` shows it down,
// instead of silently closing every later client.
async function checkBackend(cause) {
  const timeout = new Promise((_, reject) => {
    setTimeout(() => reject(new Error('probe timed out')), 2000).unref();
  });
  try {
    await Promise.race([db.query('SELECT 1'), timeout]);
  } catch (err) {
    process.stderr.write(`pglite: backend unusable after session error (${cause}): ${err}; exiting\n`);
    process.exit(3);
  }
}

const server = createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('error', () => {}); // a waiting client that resets must not crash the server
  waiting.push(socket);
  attachNext();
});
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, host, resolve);
});
process.stdout.write(`PGLITE READY ${host}:${port}\n`);

async function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`pglite: ${signal}, stopping\n`);
  // Never hang on exit (e.g. a client that keeps its socket open): hard stop after 3 s.
  setTimeout(() => process.exit(0), 3000).unref();
  try {
    for (const socket of waiting) socket.destroy();
    current?.detach(true);
    server.close();
    await db.close();
  } finally {
    process.exit(0);
  }
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
