import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chmodSync, copyFileSync, existsSync, statSync } from 'node:fs';
import net from 'node:net';
import { closeProxy, createProxy, Policy, proxyDataPath, type ProxyDataPath } from '../../src/index.js';
import { closeServer, needCommand, needRoot, run, tempDir } from '../helpers/index.js';
import { expectedDigest, receiveStream, sendStream } from './streams.js';

// The test process itself: allowed whether the suite runs as root or not.
const SELF = () => new Policy().uid(process.getuid!());

/** A target that answers each connection through `handle`; half-open so replies can follow the client's end. */
async function target(path: string, handle: (s: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, handle);
  server.listen(path);
  await once(server, 'listening');
  return server;
}

function connectTo(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path, allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
}

async function setup(
  t: { after: (fn: () => unknown) => void },
  handle: (s: net.Socket) => void,
  policy = SELF(),
  mode = 0o600,
  dataPath: ProxyDataPath = 'auto',
) {
  const tmp = tempDir('secpolicy-proxy-');
  const lines: string[] = [];
  const backend = await target(tmp.path('target.sock'), handle);
  const proxy = await createProxy({
    listen: tmp.path('proxy.sock'),
    target: tmp.path('target.sock'),
    policy,
    mode,
    log: (l) => lines.push(l),
    dataPath,
  });
  if (dataPath !== 'auto') assert.equal(proxyDataPath(proxy).path, dataPath);
  t.after(async () => {
    await closeProxy(proxy, { grace: 0 });
    await closeServer(backend);
    tmp.cleanup();
  });
  return { tmp, proxy, backend, lines, path: tmp.path('proxy.sock') };
}

test('an allowed client reaches the target through the proxy, with the socket file at the asked mode', async (t) => {
  const { path } = await setup(t, (s) => s.pipe(s), SELF(), 0o660);
  assert.equal(statSync(path).mode & 0o777, 0o660);
  const c = await connectTo(path);
  const reply = receiveStream(c);
  c.end('hello through the proxy');
  const { bytes } = await reply;
  assert.equal(bytes, 'hello through the proxy'.length);
});

test(
  'a denied peer never reaches the target and the denial is logged in one line',
  { skip: needRoot() || needCommand('setpriv') },
  async (t) => {
    let reached = 0;
    const { path, lines } = await setup(
      t,
      (s) => {
        reached++;
        s.end();
      },
      SELF(),
      0o666,
    );
    const script = `const s=require('net').connect(${JSON.stringify(path)});s.on('connect',()=>s.write('secret request'));s.on('close',()=>console.log('closed'));s.on('error',e=>console.log(e.code));s.resume()`;
    const client = run(process.execPath, ['-e', script], { as: { uid: 1, gid: 1 } });
    const { stdout } = await client.output();
    assert.match(stdout, /closed/);
    assert.equal(reached, 0, 'the target saw no connection');
    const denial = lines.find((l) => l.startsWith('denied'));
    assert.ok(denial, `a denial was logged: ${JSON.stringify(lines)}`);
    assert.match(denial, /^denied pid=\d+ uid=1 gid=1: /);
    assert.ok(!denial.includes('\n') && !denial.includes('secret request'));
  },
);

test(
  'a client whose program path holds a newline cannot forge a log line: control characters are escaped',
  { skip: needCommand('python3') },
  async (t) => {
    const { path, lines, tmp } = await setup(t, (s) => s.end(), new Policy().program('/bin/sh'));
    // A copy of python3 whose file name carries a line of its own.
    const evil = tmp.path('py\ndenied pid=1 uid=0 gid=0: forged');
    copyFileSync('/usr/bin/python3', evil);
    chmodSync(evil, 0o755);
    const client = run(evil, ['-c', 'import socket, sys\ns = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.recv(1)', path]);
    await client.output();
    const denial = lines.find((l) => l.startsWith('denied'));
    assert.ok(denial, JSON.stringify(lines));
    // eslint-disable-next-line no-control-regex
    assert.ok(!/[\n\r\x00-\x1f]/.test(denial), `one line, no control characters: ${JSON.stringify(denial)}`);
    assert.ok(denial.includes('py\\x0adenied pid=1'), `the newline is shown escaped: ${denial}`);
  },
);

for (const via of ['splice', 'streams'] as const) {
  test(
    `${via}: half-close: a client that shuts down its write side still receives the whole reply`,
    { skip: needCommand('python3') },
    async (t) => {
      const REPLY = 4 * 1024 * 1024;
      const { path } = await setup(
        t,
        (s) => {
          const request = receiveStream(s);
          request.then(async ({ bytes }) => {
            assert.equal(bytes, 5);
            await sendStream(s, 7, REPLY);
          });
        },
        SELF(),
        0o600,
        via,
      );
      // python3 is a peer we did not write: it sends, shuts down SHUT_WR, then reads to EOF.
      const script = `
import hashlib, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b'hello'); s.shutdown(socket.SHUT_WR)
h = hashlib.sha256(); n = 0
while True:
    d = s.recv(65536)
    if not d: break
    h.update(d); n += len(d)
print(n, h.hexdigest())`;
      const { stdout, code, stderr } = await run('/usr/bin/python3', ['-c', script, path]).output();
      assert.equal(code, 0, stderr);
      assert.equal(stdout.trim(), `${REPLY} ${expectedDigest(7, REPLY)}`);
    },
  );

  test(`${via}: half-close: after the target ends its side, the client still delivers everything it sends`, async (t) => {
    const SIZE = 8 * 1024 * 1024;
    let received: Promise<{ digest: string; bytes: number }> | undefined;
    const { path } = await setup(
      t,
      (s) => {
        received = receiveStream(s);
        s.end('bye'); // the target is done talking but keeps listening
      },
      SELF(),
      0o600,
      via,
    );
    const c = await connectTo(path);
    const closed = once(c, 'close');
    const greeting = receiveStream(c);
    assert.equal((await greeting).bytes, 3, 'the client sees the end of the reply');
    await sendStream(c, 11, SIZE);
    const got = await received!;
    assert.deepEqual(got, { digest: expectedDigest(11, SIZE), bytes: SIZE });
    await closed;
  });

  test(`${via}: 16 concurrent connections x 16 MiB each way: no byte lost, duplicated or reordered`, async (t) => {
    const SIZE = 16 * 1024 * 1024;
    const N = 16;
    const results: Array<Promise<{ digest: string; bytes: number }>> = [];
    const { path } = await setup(
      t,
      (s) => {
        s.once('data', (first: Buffer) => {
          // The first byte names the connection, so each side knows which stream to expect.
          const id = first[0]!;
          s.unshift(first.subarray(1));
          results[id] = receiveStream(s);
          sendStream(s, 1000 + id, SIZE).catch(() => {});
        });
      },
      SELF(),
      0o600,
      via,
    );
    await Promise.all(
      Array.from({ length: N }, async (_, id) => {
        const c = await connectTo(path);
        const back = receiveStream(c);
        c.write(Buffer.from([id]));
        await sendStream(c, id, SIZE);
        assert.deepEqual(await back, { digest: expectedDigest(1000 + id, SIZE), bytes: SIZE }, `reply stream ${id}`);
      }),
    );
    for (let id = 0; id < N; id++)
      assert.deepEqual(await results[id], { digest: expectedDigest(id, SIZE), bytes: SIZE }, `request stream ${id}`);
  });
}

test('target down: the client is closed cleanly and the reason logged', async (t) => {
  const tmp = tempDir('secpolicy-proxy-down-');
  const lines: string[] = [];
  const proxy = await createProxy({
    listen: tmp.path('p.sock'),
    target: tmp.path('missing.sock'),
    policy: SELF(),
    log: (l) => lines.push(l),
  });
  t.after(async () => {
    await closeProxy(proxy, { grace: 0 });
    tmp.cleanup();
  });
  const c = await connectTo(tmp.path('p.sock'));
  const got = receiveStream(c);
  c.write('early bytes that nobody will read');
  assert.equal((await got).bytes, 0, 'a clean end of stream, no reset');
  c.end();
  await once(c, 'close');
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /^target .*missing\.sock unavailable for pid=\d+ uid=\d+: ENOENT; client connection closed$/);
});

test('closeProxy stops accepting, removes the socket file, and cuts connections after the grace period', async (t) => {
  const tmp = tempDir('secpolicy-proxy-close-');
  t.after(() => tmp.cleanup());
  // Never answers; closes only once the proxy has cut the connection.
  const backend = await target(tmp.path('t.sock'), (s) => s.on('end', () => s.destroy()));
  t.after(() => closeServer(backend));
  const proxy = await createProxy({ listen: tmp.path('p.sock'), target: tmp.path('t.sock'), policy: SELF() });
  const forwarded = once(backend, 'connection');
  const c = await connectTo(tmp.path('p.sock'));
  t.after(() => c.destroy());
  await forwarded; // accepted and forwarded, not just queued in the backlog
  const cut = once(c, 'end');
  c.on('error', () => {});
  await closeProxy(proxy, { grace: 50 });
  await cut;
  assert.equal(existsSync(tmp.path('p.sock')), false);
  await assert.rejects(connectTo(tmp.path('p.sock')), { code: 'ENOENT' });
});

test('createProxy validates its options, naming the field', async () => {
  const policy = SELF();
  await assert.rejects(createProxy({ listen: '', target: '/x', policy }), {
    code: 'ERR_SECPOLICY_INVALID_ARG',
    message: /options\.listen/,
  });
  await assert.rejects(createProxy({ listen: '/tmp/x.sock', target: 5 as never, policy }), {
    code: 'ERR_SECPOLICY_INVALID_ARG',
    message: /options\.target/,
  });
  await assert.rejects(createProxy({ listen: '/tmp/x.sock', target: '/x', policy: {} as Policy }), {
    code: 'ERR_SECPOLICY_INVALID_ARG',
    message: /options\.policy/,
  });
  await assert.rejects(createProxy({ listen: '/tmp/x.sock', target: '/x', policy, mode: 0o1777 }), {
    code: 'ERR_SECPOLICY_INVALID_ARG',
    message: /options\.mode/,
  });
  await assert.rejects(closeProxy(net.createServer()), { code: 'ERR_SECPOLICY_INVALID_ARG', message: /server/ });
});
