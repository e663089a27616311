/**
 * The gateway's upstream connections: kept alive and reused across requests and client
 * connections, one per request in flight, never reused once either side has given them
 * up, closed with the gateway. A real upstream HTTP server counts what it accepted.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type net from 'node:net';
import { closeGateway } from '../../src/index.js';
import { keepAliveHint, UpstreamPool } from '../../src/gateway/upstream.js';
import { closeServer, isRoot, tempDir } from '../helpers/index.js';
import { gatewayFixture, upstream } from './helpers.js';

const POLICY = {
  version: 1,
  api: 'docker',
  rules: [{ name: 'me', who: { uid: isRoot ? 0 : process.getuid!() }, allow: ['GET /**', 'HEAD /**'] }],
};

/** One GET through a fresh client connection (`Connection: close`); resolves with status and body. */
function get(socketPath: string, path: string, agent: http.Agent | false = false): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath, path, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      })
      .on('error', reject);
  });
}

/** The sockets an upstream server accepted, and each one's close. */
function accepted(server: http.Server): net.Socket[] {
  const sockets: net.Socket[] = [];
  server.on('connection', (s: net.Socket) => sockets.push(s));
  return sockets;
}

/** An upstream server and a pool in front of it; `request` GETs a path through the pool, with the socket it used and the body. */
async function pooled(t: TestContext) {
  const tmp = tempDir('secpolicy-upstream-');
  t.after(() => tmp.cleanup());
  const up = await upstream(t, tmp.path('up.sock'));
  const sockets = accepted(up.server);
  const pool = new UpstreamPool(tmp.path('up.sock'));
  t.after(() => pool.destroy());
  const request = (path: string) =>
    new Promise<{ socket: net.Socket; body: string }>((resolve, reject) => {
      const r = http.get({ agent: pool, socketPath: tmp.path('up.sock'), path }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ socket: r.socket!, body }));
      });
      r.on('error', reject);
    });
  return { up, sockets, pool, request };
}

test('sequential requests of different clients share one upstream connection', async (t) => {
  const gw = await gatewayFixture(t, POLICY);
  const sockets = accepted(gw.up.server);
  for (let i = 0; i < 10; i++) assert.equal((await get(gw.path, `/n/${i}`)).status, 200);
  assert.equal(sockets.length, 1);
  assert.deepEqual(
    gw.up.received.map((r) => r.url),
    Array.from({ length: 10 }, (_, i) => `/n/${i}`),
  );
});

test('requests in flight at once get a connection each; later ones reuse them', async (t) => {
  let held: Array<() => void> = [];
  let arrived: () => void = () => {};
  const all = new Promise<void>((resolve) => (arrived = resolve));
  const gw = await gatewayFixture(t, POLICY, {
    upstream: {
      handle: (req, res) => {
        if (!req.url!.startsWith('/slow')) return false;
        // Answer only once all five are waiting here: they are in flight together.
        held.push(() => res.end('slow'));
        if (held.length === 5) arrived();
        return true;
      },
    },
  });
  const sockets = accepted(gw.up.server);
  const slow = Array.from({ length: 5 }, (_, i) => get(gw.path, `/slow/${i}`));
  await all;
  for (const answer of held) answer();
  held = [];
  assert.deepEqual(
    (await Promise.all(slow)).map((r) => r.body),
    ['slow', 'slow', 'slow', 'slow', 'slow'],
  );
  assert.equal(sockets.length, 5);
  for (let i = 0; i < 5; i++) assert.equal((await get(gw.path, '/fast')).status, 200);
  assert.equal(sockets.length, 5);
});

test('an upstream answer with Connection: close is not reused, and the client connection stays open', async (t) => {
  const gw = await gatewayFixture(t, POLICY, {
    upstream: {
      handle: (req, res) => {
        if (req.url !== '/last') return false;
        res.writeHead(200, { 'Content-Length': 4, Connection: 'close' });
        res.end('last');
        return true;
      },
    },
  });
  const sockets = accepted(gw.up.server);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  let clientSocket: net.Socket | undefined;
  agent.on('free', (s: net.Socket) => (clientSocket ??= s));
  assert.equal((await get(gw.path, '/last', agent)).body, 'last');
  const first = clientSocket!;
  const { status, body } = await get(gw.path, '/after', agent);
  assert.equal(status, 200);
  assert.match(body, /"url":"\/after"/);
  // The upstream's `Connection: close` is hop-by-hop: the client kept its connection.
  assert.equal(clientSocket, first);
  assert.ok(!first.destroyed);
  assert.equal(sockets.length, 2);
});

test('a pooled connection the upstream closed while idle is dropped; the next request opens a new one', async (t) => {
  const { sockets, request } = await pooled(t);
  const one = await request('/one');
  assert.equal(sockets.length, 1);
  // The upstream goes away from the idle connection; the pool's side sees it close.
  const gone = once(one.socket, 'close');
  sockets[0]!.destroy();
  await gone;
  const two = await request('/two');
  assert.match(two.body, /"url":"\/two"/);
  assert.notEqual(two.socket, one.socket);
  assert.equal(sockets.length, 2);
  // And that one is reused.
  const three = await request('/three');
  assert.equal(three.socket, two.socket);
  assert.equal(sockets.length, 2);
});

// The test's own timeout only ends a pool that never applies the option (it would wait forever).
test("a request's timeout option bounds it on a pooled connection", { timeout: 20_000 }, async (t) => {
  const tmp = tempDir('secpolicy-upstream-');
  t.after(() => tmp.cleanup());
  // An upstream that reads the request and never answers.
  const server = http.createServer(() => {});
  server.listen(tmp.path('up.sock'));
  await once(server, 'listening');
  t.after(() => closeServer(server));
  const pool = new UpstreamPool(tmp.path('up.sock'));
  t.after(() => pool.destroy());
  const r = http.get({ agent: pool, socketPath: tmp.path('up.sock'), path: '/never', timeout: 50 });
  r.on('error', () => {});
  await once(r, 'timeout');
  r.destroy();
});

test('closing the gateway closes its upstream connections', async (t: TestContext) => {
  const gw = await gatewayFixture(t, POLICY);
  // No idle timeout upstream: only the gateway can close these.
  gw.up.server.keepAliveTimeout = 0;
  const sockets = accepted(gw.up.server);
  await Promise.all(Array.from({ length: 3 }, (_, i) => get(gw.path, `/c/${i}`)));
  assert.ok(sockets.length >= 1);
  const closed = sockets.map((s) => once(s, 'close'));
  await closeGateway(gw.server, { grace: 0 });
  // Without the gateway's close these would stay open until the upstream's own idle timeout.
  await Promise.all(closed);
});

// The test's own timeout only ends a pool that never lets the connection go (it would wait forever).
test(
  'an upstream that states its keep-alive time: a connection is let go before it, or not kept when that time is a second or less',
  { timeout: 20_000 },
  async (t) => {
    assert.equal(keepAliveHint(['Keep-Alive', 'timeout=5']), 5000);
    assert.equal(keepAliveHint(['keep-alive', 'max=100, timeout = 2']), 2000);
    assert.equal(keepAliveHint(['Keep-Alive', 'maxtimeout=5']), undefined);
    assert.equal(keepAliveHint(['Content-Type', 'timeout=5']), undefined);
    assert.equal(keepAliveHint(undefined), undefined);
    const { up, sockets, request: get } = await pooled(t);
    const request = async (path: string) => (await get(path)).socket;
    // Node's server says `Keep-Alive: timeout=1` for a 1 s keepAliveTimeout: too short to reuse.
    up.server.keepAliveTimeout = 1000;
    const a = await request('/a');
    await once(a, 'close');
    await request('/b');
    assert.equal(sockets.length, 2);
    // With 2 s stated, the pool keeps the connection and closes it itself about a second later
    // (the upstream would only after 2 s, and has no timeout of its own at all here).
    up.server.keepAliveTimeout = 2000;
    const c = await request('/c');
    const d = await request('/d');
    assert.equal(d, c);
    assert.equal(sockets.length, 3);
    // The pool's side ends it: the upstream's side reads the end of the stream (its own
    // timeout would close it without one), and that timeout is turned off to be sure.
    const upstreamSide = sockets[2]!;
    upstreamSide.setTimeout(0);
    let ended = false;
    upstreamSide.on('end', () => (ended = true));
    await once(upstreamSide, 'close');
    assert.ok(ended);
    assert.ok(c.destroyed);
  },
);
