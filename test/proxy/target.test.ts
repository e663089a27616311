import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chmodSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { closeProxy, createProxy, Policy, proxyDataPath } from '../../src/index.js';
import { closeServer, needCommand, needRoot, run, tempDir } from '../helpers/index.js';
import { expectedDigest, receiveStream, sendStream } from './streams.js';

// The test process itself: allowed whether the suite runs as root or not.
const SELF = () => new Policy().uid(process.getuid!());

function connectTo(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path, allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
}

/** The first line a child prints on stdout. */
async function firstLine(child: ReturnType<typeof run>): Promise<string> {
  const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
  return line;
}

test(
  'a busy target (backlog 1, accepting slowly) is retried: every one of 24 concurrent clients is served',
  { skip: needCommand('python3') },
  async (t) => {
    const tmp = tempDir('secpolicy-proxy-busy-');
    t.after(() => tmp.cleanup());
    // python3, a target we did not write: backlog 1, a pause before each accept, one client at a time.
    const script = `
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)
print('ready', flush=True)
while True:
    time.sleep(0.01)
    c, _ = s.accept()
    req = b''
    while not req.endswith(b'\\n'):
        d = c.recv(100)
        if not d: break
        req += d
    c.sendall(b'served ' + req); c.close()`;
    const backend = run('/usr/bin/python3', ['-c', script, tmp.path('t.sock')]);
    t.after(() => backend.kill('SIGKILL'));
    assert.equal(await firstLine(backend), 'ready');
    const lines: string[] = [];
    const proxy = await createProxy({
      listen: tmp.path('p.sock'),
      target: tmp.path('t.sock'),
      policy: SELF(),
      log: (l) => lines.push(l),
    });
    t.after(() => closeProxy(proxy, { grace: 0 }));
    const replies = await Promise.all(
      Array.from({ length: 24 }, async (_, i) => {
        const c = await connectTo(tmp.path('p.sock'));
        const got = receiveText(c);
        c.write(`client ${i}\n`);
        return got;
      }),
    );
    assert.deepEqual(
      replies,
      Array.from({ length: 24 }, (_, i) => `served client ${i}\n`),
    );
    assert.deepEqual(lines, [], 'no client was turned away');
  },
);

test(
  'a target that stays busy past targetTimeout: the client is closed cleanly and one line says so',
  { skip: needCommand('python3') },
  async (t) => {
    const tmp = tempDir('secpolicy-proxy-stuck-');
    t.after(() => tmp.cleanup());
    // Listens but never accepts: once its queue is full, every connect() is EAGAIN.
    const stuck = run('/usr/bin/python3', [
      '-c',
      "import socket, sys, time\ns = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(0)\nprint('ready', flush=True)\ntime.sleep(3600)",
      tmp.path('t.sock'),
    ]);
    t.after(() => stuck.kill('SIGKILL'));
    assert.equal(await firstLine(stuck), 'ready');
    const fillers: net.Socket[] = [];
    t.after(() => fillers.forEach((f) => f.destroy()));
    for (;;) {
      const s = net.connect(tmp.path('t.sock'));
      const outcome = await new Promise<string>((resolve) => {
        s.once('connect', () => resolve('ok'));
        s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      });
      if (outcome !== 'ok') {
        assert.equal(outcome, 'EAGAIN');
        break;
      }
      fillers.push(s);
    }
    const lines: string[] = [];
    const proxy = await createProxy({
      listen: tmp.path('p.sock'),
      target: tmp.path('t.sock'),
      policy: SELF(),
      targetTimeout: 200,
      log: (l) => lines.push(l),
    });
    t.after(() => closeProxy(proxy, { grace: 0 }));
    const c = await connectTo(tmp.path('p.sock'));
    const got = receiveStream(c);
    c.write('hello?');
    assert.equal((await got).bytes, 0, 'a clean end of stream');
    c.destroy();
    assert.equal(lines.length, 1, JSON.stringify(lines));
    assert.match(
      lines[0]!,
      /^target .*t\.sock unavailable for pid=\d+ uid=\d+: ERR_SECPOLICY_TIMEOUT: .*t\.sock stayed busy \(its accept queue full\) for 200 ms; client connection closed$/,
    );
  },
);

test(
  'targetPolicy: a squatter (another user) at the target path while the service is down gets no byte of the client',
  { skip: needRoot() || needCommand('python3', 'setpriv') },
  async (t) => {
    const tmp = tempDir('secpolicy-proxy-squat-');
    t.after(() => tmp.cleanup());
    // The service's directory is one a local user can write to (the mistake the target policy covers).
    mkdirSync(tmp.path('run'));
    chmodSync(tmp.path('run'), 0o1777);
    const targetPath = tmp.path('run/service.sock');
    const squat = `
import socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(16)
print('ready', flush=True)
while True:
    c, _ = s.accept()
    n = 0
    while True:
        d = c.recv(65536)
        if not d: break
        n += len(d)
    print('received', n, flush=True)`;
    const squatter = run('/usr/bin/python3', ['-c', squat, targetPath], { as: { uid: 1, gid: 1 } });
    t.after(() => squatter.kill('SIGKILL'));
    const out = createInterface({ input: squatter.stdout! })[Symbol.asyncIterator]();
    assert.equal((await out.next()).value, 'ready');

    const lines: string[] = [];
    const proxy = await createProxy({
      listen: tmp.path('p.sock'),
      target: targetPath,
      policy: SELF(),
      targetPolicy: new Policy().uid(0),
      log: (l) => lines.push(l),
    });
    t.after(() => closeProxy(proxy, { grace: 0 }));
    const c = await connectTo(tmp.path('p.sock'));
    const got = receiveStream(c);
    c.end('the secret request');
    assert.equal((await got).bytes, 0, 'the client sees a clean end, no reply');
    // The squatter saw the proxy's connection (that is how it was checked) and not one byte.
    assert.equal((await out.next()).value, 'received 0');
    assert.equal(lines.length, 1, JSON.stringify(lines));
    assert.match(
      lines[0]!,
      /^target .*service\.sock failed the target policy \(server pid=\d+ uid=1\) for pid=\d+ uid=0: .*uid 1 is not 0; client connection closed$/,
    );
  },
);

test('targetPolicy: a target that passes gets the bytes; bytes either side sent before the hand-over arrive first, in order', async (t) => {
  const tmp = tempDir('secpolicy-proxy-tp-');
  t.after(() => tmp.cleanup());
  // The target greets at once; the client talks at once: both while the proxy still verifies.
  const received: Array<Promise<{ digest: string; bytes: number }>> = [];
  const backend = net.createServer({ allowHalfOpen: true }, (s) => {
    s.write('greeting;');
    received.push(receiveStream(s));
    s.end();
  });
  backend.listen(tmp.path('t.sock'));
  await once(backend, 'listening');
  t.after(() => closeServer(backend));
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const proxy = await createProxy({
    listen: tmp.path('p.sock'),
    target: tmp.path('t.sock'),
    policy: SELF(),
    // Holds the decision on the target until the test has let both sides talk.
    targetPolicy: new Policy().uid(process.getuid!()).callback(async () => (await released, true)),
  });
  t.after(() => closeProxy(proxy, { grace: 0 }));
  const c = await connectTo(tmp.path('p.sock'));
  const reply = receiveText(c);
  const SIZE = 4 * 1024 * 1024;
  const sent = sendStream(c, 5, SIZE);
  // Let the proxy read what both sides sent so far into its buffers before it decides.
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  release();
  await sent;
  assert.equal(await reply, 'greeting;');
  assert.equal(received.length, 1);
  assert.deepEqual(await received[0], { digest: expectedDigest(5, SIZE), bytes: SIZE });
});

test(`${'splice'}: 128 MiB each way to and from a python3 peer, sha256 compared`, { skip: needCommand('python3') }, async (t) => {
  const tmp = tempDir('secpolicy-proxy-big-');
  t.after(() => tmp.cleanup());
  const SIZE = 128 * 1024 * 1024;
  let fromClient: Promise<{ digest: string; bytes: number }> | undefined;
  const backend = net.createServer({ allowHalfOpen: true }, (s) => {
    fromClient = receiveStream(s);
    sendStream(s, 9, SIZE).catch(() => {});
  });
  backend.listen(tmp.path('t.sock'));
  await once(backend, 'listening');
  t.after(() => closeServer(backend));
  const proxy = await createProxy({ listen: tmp.path('p.sock'), target: tmp.path('t.sock'), policy: SELF(), dataPath: 'splice' });
  t.after(() => closeProxy(proxy, { grace: 0 }));
  assert.deepEqual(proxyDataPath(proxy), { path: 'splice' });
  // The python3 client sends SIZE bytes of a repeating pattern while reading the reply.
  const script = `
import hashlib, socket, sys, threading
n = int(sys.argv[2])
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
block = bytes(range(256)) * 256
def send():
    left = n
    while left > 0:
        k = min(left, len(block)); s.sendall(block[:k]); left -= k
    s.shutdown(socket.SHUT_WR)
th = threading.Thread(target=send); th.start()
h = hashlib.sha256(); got = 0
while True:
    d = s.recv(1 << 20)
    if not d: break
    h.update(d); got += len(d)
th.join()
print(got, h.hexdigest())`;
  const client = await run('/usr/bin/python3', ['-c', script, tmp.path('p.sock'), String(SIZE)]).output();
  assert.equal(client.code, 0, client.stderr);
  assert.equal(client.stdout.trim(), `${SIZE} ${expectedDigest(9, SIZE)}`);
  const pattern = Buffer.from(Array.from({ length: 256 * 256 }, (_, i) => i & 0xff));
  const h = (await import('node:crypto')).createHash('sha256');
  for (let left = SIZE; left > 0; left -= pattern.length) h.update(pattern.subarray(0, Math.min(left, pattern.length)));
  assert.deepEqual(await fromClient, { digest: h.digest('hex'), bytes: SIZE });
});

/** Everything `socket` receives until its end, as text. */
function receiveText(socket: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    socket.on('data', (d: Buffer) => (text += d));
    socket.once('end', () => resolve(text));
    socket.once('error', reject);
  });
}
