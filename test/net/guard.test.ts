import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import { ErrorCode, Policy, Result, guard, isSecpolicyError, peerOf, type Decision } from '../../src/index.js';
import { needCommand, needRoot, run } from '../helpers/index.js';
import { DAEMON, NOBODY, record, serve } from './fixtures.js';

/** A guarded HTTP server answering with the verified peer; counts the requests it parsed. */
async function guardedHttp(t: import('node:test').TestContext, policy: Policy) {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    const peer = peerOf(req.socket);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ uid: peer?.uid, user: peer?.user }));
  });
  guard(server, policy);
  const denied = record<[Decision | Error, net.Socket]>(server, 'denied');
  const path = await serve(t, server);
  return { server, path, requests, denied };
}

const curl = (path: string) => ['curl', ['-sS', '--max-time', '10', '--unix-socket', path, 'http://localhost/who']] as [string, string[]];
const HTTP_GET = 'GET /who HTTP/1.0\r\nHost: localhost\r\n\r\n';

test(
  'guard: curl --unix-socket gets its response as an allowed uid and no byte at all as another user',
  { timeout: 60_000, skip: needRoot() || needCommand('curl') },
  async (t) => {
    const { path, requests, denied } = await guardedHttp(t, new Policy().uid(0));
    const allowed = await run(...curl(path)).output();
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.deepEqual(JSON.parse(allowed.stdout), { uid: 0, user: 'root' });

    const other = await run(...curl(path), { as: DAEMON }).output();
    assert.equal(other.stdout, '', 'no response byte reaches a denied peer');
    // How curl words a connection closed under it depends on when it notices: at connect (7),
    // sending (55), receiving (56) or as an empty reply (52). Never a response.
    assert.ok([7, 52, 55, 56].includes(other.code!), `curl exit code ${other.code}: ${other.stderr}`);
    assert.deepEqual(requests, ['/who'], 'the denied request was never parsed');
    assert.equal(denied.length, 1);
    assert.equal((denied[0]![0] as Decision).result, Result.UID);
  },
);

test(
  'guard: socat sends a raw HTTP request; allowed gets 200, another user gets zero bytes',
  { timeout: 60_000, skip: needRoot() || needCommand('socat') },
  async (t) => {
    const { path, requests } = await guardedHttp(t, new Policy().user('daemon'));
    const socat = (as?: typeof DAEMON) => {
      const child = run('socat', ['-t', '5', '-', `UNIX-CONNECT:${path}`], as ? { as } : {});
      child.stdin!.end(HTTP_GET);
      return child.output();
    };
    const allowed = await socat(DAEMON);
    assert.match(allowed.stdout, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(allowed.stdout, /\{"uid":1,"user":"daemon"\}$/);
    const root = await socat();
    assert.equal(root.stdout, '');
    const nobody = await socat(NOBODY);
    assert.equal(nobody.stdout, '');
    assert.deepEqual(requests, ['/who']);
  },
);

test(
  'guard: a python3 client (the system interpreter, as another user) is served or cut off by the policy',
  { timeout: 60_000, skip: needRoot() || needCommand('/usr/bin/python3') },
  async (t) => {
    const { path } = await guardedHttp(t, new Policy().uid(65534).group('nogroup'));
    const script = [
      'import socket, sys',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)',
      's.connect(sys.argv[1])',
      'try:',
      '    s.sendall(sys.argv[2].encode())',
      'except OSError:',
      '    pass',
      'data = b""',
      'while True:',
      '    try:',
      '        chunk = s.recv(4096)',
      '    except OSError:',
      '        break',
      '    if not chunk:',
      '        break',
      '    data += chunk',
      'sys.stdout.write("%d bytes\\n" % len(data))',
      'sys.stdout.write(data.decode())',
    ].join('\n');
    const py = (as: typeof DAEMON) => run('/usr/bin/python3', ['-c', script, path, HTTP_GET], { as }).output();
    const allowed = await py(NOBODY);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stdout, /"uid":65534,"user":"nobody"/);
    const other = await py(DAEMON);
    assert.equal(other.code, 0, other.stderr);
    assert.equal(other.stdout, '0 bytes\n');
  },
);

test(
  'guard: bytes sent while an async callback decides are parsed once the peer is allowed',
  { timeout: 60_000, skip: needCommand('curl') },
  async (t) => {
    const slow = new Policy().callback(
      (peer) => new Promise<boolean>((resolve) => setTimeout(() => resolve(peer.uid === process.getuid!()), 100)),
    );
    const { path, requests } = await guardedHttp(t, slow);
    const out = await run(...curl(path)).output();
    assert.equal(out.code, 0, out.stderr);
    assert.equal(JSON.parse(out.stdout).uid, process.getuid!());
    assert.deepEqual(requests, ['/who']);
  },
);

test('guard: a keep-alive connection is verified once and keeps its peer for every request', { timeout: 60_000 }, async (t) => {
  let verifications = 0;
  const counting = new Policy().uid(process.getuid!()).callback(() => (verifications++, true));
  const peers: unknown[] = [];
  const server = guard(
    http.createServer((req, res) => {
      peers.push(peerOf(req.socket));
      res.end(String(peers.length));
    }),
    counting,
  );
  const path = await serve(t, server);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const get = () =>
    new Promise<string>((resolve, reject) => {
      http
        .get({ socketPath: path, path: '/', agent }, (res) => {
          let body = '';
          res.on('data', (d) => (body += d)).on('end', () => resolve(body));
        })
        .on('error', reject);
    });
  assert.deepEqual([await get(), await get(), await get()], ['1', '2', '3']);
  assert.equal(verifications, 1);
  assert.ok(peers[0] !== undefined && peers.every((p) => p === peers[0]));
});

test(
  'guard: a plain net.Server listener runs only for allowed peers',
  { timeout: 60_000, skip: needRoot() || needCommand('socat') },
  async (t) => {
    const greeted: number[] = [];
    const server = guard(
      net.createServer((socket) => {
        greeted.push(peerOf(socket)!.uid);
        socket.end('welcome\n');
      }),
      new Policy().uid(1),
    );
    const path = await serve(t, server);
    const as = (who?: typeof DAEMON) => run('socat', ['-u', `UNIX-CONNECT:${path}`, '-'], who ? { as: who } : {}).output();
    assert.equal((await as(DAEMON)).stdout, 'welcome\n');
    assert.equal((await as()).stdout, '');
    assert.deepEqual(greeted, [1]);
  },
);

test('guard: refuses challenge policies, a second guard, and bad arguments', () => {
  const challenge = new Policy().uid(0).challengeSend(
    () => new Uint8Array(8),
    () => true,
  );
  assert.throws(
    () => guard(http.createServer(), challenge),
    (e: unknown) => isSecpolicyError(e) && e.code === ErrorCode.ASYNC_RULE,
  );
  const server = guard(http.createServer(), new Policy().uid(0));
  assert.throws(
    () => guard(server, new Policy().uid(1)),
    (e: unknown) => isSecpolicyError(e) && e.code === ErrorCode.INVALID_ARG && /server/.test(e.message),
  );
  const invalid = (fn: () => unknown, field: RegExp) =>
    assert.throws(fn, (e: unknown) => isSecpolicyError(e) && e.code === ErrorCode.INVALID_ARG && field.test(e.message));
  invalid(() => guard({} as never, new Policy()), /server/);
  invalid(() => guard(http.createServer(), 'uid 0' as never), /policy/);
  invalid(() => guard(http.createServer(), new Policy(), { handshakeTimeout: 0 }), /options\.handshakeTimeout/);
  invalid(() => guard(http.createServer(), new Policy(), { maxConnectionsPerUid: -2 }), /options\.maxConnectionsPerUid/);
});

test(
  "guard deny: 'http': a denied peer that keeps sending is cut off after a bounded read, not drained forever",
  { timeout: 30_000, skip: needRoot() || needCommand('/usr/bin/python3') },
  async (t) => {
    const server = http.createServer((_req, res) => res.end('never'));
    // A handshake timeout far beyond the test's: only the byte bound can end this connection.
    guard(server, new Policy().uid(0), { deny: 'http', handshakeTimeout: 600_000 });
    const path = await serve(t, server);
    // python3 goes on reading after its sends fail, as an HTTP client reading a 403 would.
    const script = [
      'import socket, sys',
      's = socket.socket(socket.AF_UNIX)',
      's.connect(sys.argv[1])',
      "cut = 'never cut'",
      'try:',
      '    for i in range(256):',
      "        s.sendall(b'x' * 65536)",
      'except OSError:',
      "    cut = 'cut'",
      "sys.stdout.write(cut + ' ')",
      "got = b''",
      'try:',
      '    while True:',
      '        d = s.recv(65536)',
      '        if not d: break',
      '        got += d',
      'except OSError:',
      '    pass',
      "sys.stdout.write(got.split(b'\\r\\n')[0].decode())",
    ].join('\n');
    const flood = await run('/usr/bin/python3', ['-c', script, path], { as: DAEMON }).output();
    assert.equal(flood.code, 0, flood.stderr);
    // 16 MiB offered; the server reads at most 64 KiB of it and then closes.
    assert.equal(flood.stdout, 'cut HTTP/1.1 403 Forbidden', 'cut off, and the response arrived before the cut');
  },
);
