/**
 * Readiness, stopping and the watchdog, read by a real supervisor-side datagram socket
 * (python3), from `secpolicy proxy` running socket-activated under systemd-socket-activate.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { needCommand, run, tempDir } from '../helpers/index.js';
import { watch, type Watched } from './watch.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const INDEX = fileURLToPath(new URL('../../src/index.js', import.meta.url));

const LISTENER = `
import json, socket, sys
where = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + where[1:] if where.startswith("@") else where)
print("bound", flush=True)
while True:
    print(json.dumps(s.recv(4096).decode()), flush=True)
`;

/** A NOTIFY_SOCKET reader at `where` (a path or @name); resolves once it is bound. */
async function supervisorSocket(t: TestContext, where: string): Promise<Watched & { messages: () => string[] }> {
  const w = watch(run('python3', ['-c', LISTENER, where]));
  t.after(() => w.child.kill('SIGKILL'));
  await w.stdout(/bound\n/);
  let text = '';
  w.child.stdout!.on('data', (d) => (text += d));
  return Object.assign(w, {
    messages: () =>
      text
        .split('\n')
        .filter((l) => l.startsWith('"'))
        .map((l) => JSON.parse(l) as string),
  });
}

for (const kind of ['path', 'abstract'] as const) {
  test(
    `secpolicy proxy --listen systemd: READY=1 once listening, WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1 on SIGTERM (NOTIFY_SOCKET as ${kind === 'path' ? 'a path' : 'an abstract name'})`,
    { skip: needCommand('systemd-socket-activate', 'python3') },
    async (t) => {
      const tmp = tempDir('secpolicy-notify-');
      t.after(() => tmp.cleanup());
      await echoTarget(t, tmp);
      const where = kind === 'path' ? tmp.path('notify.sock') : `@secpolicy-test-notify-${process.pid}-${Date.now()}`;
      const sup = await supervisorSocket(t, where);

      const proxy = watch(
        run('systemd-socket-activate', [
          '-l',
          tmp.path('p.sock'),
          '--fdname=proxy',
          '-E',
          `NOTIFY_SOCKET=${where}`,
          '-E',
          'WATCHDOG_USEC=100000',
          process.execPath,
          CLI,
          'proxy',
          '--listen',
          'systemd:proxy',
          '--to',
          tmp.path('target.sock'),
          '--policy',
          tmp.path('policy.yaml'),
        ]),
      );
      t.after(() => proxy.child.kill('SIGKILL'));
      await proxy.stderr(/Listening on .* as 3\./);
      // The first connection starts the service; it is verified and forwarded once it runs.
      const client = net.connect(tmp.path('p.sock'));
      client.end('through the activated socket');
      let echoed = '';
      client.on('data', (d) => (echoed += d));
      await once(client, 'close');
      assert.equal(echoed, 'through the activated socket');
      await proxy.stderr(/listening on the socket systemd passed \(systemd:proxy\)/);

      await sup.stdout(/READY=1/);
      await sup.stdout(/("WATCHDOG=1"[\s\S]*){3}/);
      const ready = sup.messages().find((m) => m.startsWith('READY=1'))!;
      assert.match(ready, new RegExp(`MAINPID=${proxy.child.pid}`), 'after exec the service has the pid systemd-socket-activate had');
      proxy.child.kill('SIGTERM');
      await sup.stdout(/"STOPPING=1"/);
      await once(proxy.child, 'close');
      const order = sup.messages().map((m) => m.split('\n')[0]);
      assert.equal(order[0], 'READY=1');
      assert.equal(order.at(-1), 'STOPPING=1');
    },
  );
}

test('notify(): false without NOTIFY_SOCKET, ERR_SECPOLICY_NOTIFY when nobody reads it, WATCHDOG_PID of another process: no watchdog', async () => {
  const script = `import * as sp from ${JSON.stringify(INDEX)};
    const out = {};
    out.unset = sp.notify('READY=1');
    process.env.NOTIFY_SOCKET = '/nonexistent/notify.sock';
    try { sp.notify('READY=1'); } catch (e) { out.missing = e.code; }
    process.env.NOTIFY_SOCKET = 'vsock:2:1234';
    try { sp.notify('READY=1'); } catch (e) { out.vsock = e.code; }
    try { sp.notify(''); } catch (e) { out.empty = e.code; }
    process.env.WATCHDOG_USEC = '100000';
    process.env.WATCHDOG_PID = '1';
    const lines = [];
    out.otherPid = sp.startWatchdog({ log: (l) => lines.push(l) }) === undefined;
    out.otherPidQuiet = lines.length === 0;
    process.env.WATCHDOG_PID = String(process.pid);
    const w = sp.startWatchdog();
    out.interval = w.interval;
    w.stop();
    console.log(JSON.stringify(out));`;
  const env = { ...process.env };
  delete env.NOTIFY_SOCKET;
  const { stdout, stderr } = await run(process.execPath, ['--input-type=module', '-e', script], { env }).output();
  assert.deepEqual(
    JSON.parse(stdout),
    {
      unset: false,
      missing: 'ERR_SECPOLICY_NOTIFY',
      vsock: 'ERR_SECPOLICY_NOTIFY',
      empty: 'ERR_SECPOLICY_INVALID_ARG',
      otherPid: true,
      otherPidQuiet: true,
      interval: 50,
    },
    stderr,
  );
});

test('startWatchdog(): WATCHDOG_USEC beyond a timer is clamped to 2^31-1 ms; nonsense in WATCHDOG_USEC or WATCHDOG_PID is ignored with a log line', async () => {
  const script = `import * as sp from ${JSON.stringify(INDEX)};
    const out = {};
    const tryOne = (usec, pid) => {
      process.env.WATCHDOG_USEC = usec;
      if (pid === undefined) delete process.env.WATCHDOG_PID; else process.env.WATCHDOG_PID = pid;
      const lines = [];
      const w = sp.startWatchdog({ log: (l) => lines.push(l) });
      w?.stop();
      return { interval: w?.interval ?? null, lines };
    };
    for (const [name, usec, pid] of [
      ['fiftyEightDays', '5000000000000'],
      ['maxU64Minus2', '18446744073709551614'],
      ['oneMicrosecond', '1'],
      ['infinity', '18446744073709551615'],
      ['tooLong', '184467440737095516150'],
      ['zero', '0'],
      ['negative', '-5'],
      ['text', '30s'],
      ['empty', ''],
      ['pidText', '100000', 'self'],
      ['pidZero', '100000', '0'],
      ['pidHuge', '100000', '99999999999'],
    ]) out[name] = tryOne(usec, pid);
    console.log(JSON.stringify(out));`;
  const { stdout, stderr } = await run(process.execPath, ['--input-type=module', '-e', script]).output();
  const out = JSON.parse(stdout) as Record<string, { interval: number | null; lines: string[] }>;
  const MAX = 2 ** 31 - 1;
  assert.deepEqual(out.fiftyEightDays, { interval: MAX, lines: [] }, stderr);
  assert.deepEqual(out.maxU64Minus2, { interval: MAX, lines: [] });
  assert.deepEqual(out.oneMicrosecond, { interval: 1, lines: [] });
  for (const name of ['infinity', 'tooLong', 'zero', 'negative', 'text', 'empty']) {
    assert.equal(out[name]!.interval, null, name);
    assert.equal(out[name]!.lines.length, 1, name);
    assert.match(out[name]!.lines[0]!, /^WATCHDOG_USEC=".*" is not a timeout in microseconds; the watchdog is ignored$/, name);
  }
  for (const name of ['pidText', 'pidZero', 'pidHuge']) {
    assert.equal(out[name]!.interval, null, name);
    assert.equal(out[name]!.lines.length, 1, name);
    assert.match(out[name]!.lines[0]!, /^WATCHDOG_PID=".*" is not a process id; the watchdog is ignored$/, name);
  }
});

test(
  'secpolicy proxy with WATCHDOG_USEC of 58 days: no flood of WATCHDOG=1 (a real receiver counts them)',
  { skip: needCommand('python3'), timeout: 60_000 },
  async (t) => {
    const tmp = tempDir('secpolicy-notify-');
    t.after(() => tmp.cleanup());
    await echoTarget(t, tmp);
    const sup = await supervisorSocket(t, tmp.path('notify.sock'));
    const proxy = watch(
      run(
        process.execPath,
        [CLI, 'proxy', '--listen', tmp.path('p.sock'), '--to', tmp.path('target.sock'), '--policy', tmp.path('policy.yaml')],
        {
          env: { ...process.env, NOTIFY_SOCKET: tmp.path('notify.sock'), WATCHDOG_USEC: '5000000000000' },
        },
      ),
    );
    t.after(() => proxy.child.kill('SIGKILL'));
    await sup.stdout(/READY=1/);
    // Serve a connection and give the timer room: a timer clamped to 1 ms would fire hundreds of times.
    const client = net.connect(tmp.path('p.sock'));
    client.end('served');
    let echoed = '';
    client.on('data', (d) => (echoed += d));
    await once(client, 'close');
    assert.equal(echoed, 'served');
    await new Promise((r) => setTimeout(r, 300));
    proxy.child.kill('SIGTERM');
    await sup.stdout(/"STOPPING=1"/);
    await once(proxy.child, 'close');
    const kinds = sup.messages().map((m) => m.split('\n')[0]);
    assert.deepEqual(kinds, ['READY=1', 'STOPPING=1'], `${kinds.filter((k) => k === 'WATCHDOG=1').length} WATCHDOG=1 datagrams`);
  },
);

// Fills a datagram socket's receive queue and never reads it: each sender is a fresh socket
// (a sender's own buffer holds what it sent until it is read), until a fresh one is refused.
const FULL_RECEIVER = `
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
s.bind(sys.argv[1])
senders = []
while True:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    c.setblocking(False)
    senders.append(c)
    try:
        c.sendto(b"FILL=1", sys.argv[1])
    except BlockingIOError:
        break
print("full", len(senders), flush=True)
while True:
    time.sleep(3600)
`;

/** The proxy's side in `tmp`: a policy for this uid at `policy.yaml` and an echo server at `target.sock`. */
async function echoTarget(t: TestContext, tmp: ReturnType<typeof tempDir>): Promise<void> {
  writeFileSync(tmp.path('policy.yaml'), `uid: ${process.getuid!()}\n`);
  const echo = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s)).listen(tmp.path('target.sock'));
  await once(echo, 'listening');
  t.after(() => echo.close());
}

/** A temporary directory with FULL_RECEIVER bound at `notify.sock` in it, its queue already full. */
async function fullReceiver(t: TestContext): Promise<{ tmp: ReturnType<typeof tempDir>; where: string }> {
  const tmp = tempDir('secpolicy-notify-');
  t.after(() => tmp.cleanup());
  const where = tmp.path('notify.sock');
  const receiver = watch(run('python3', ['-c', FULL_RECEIVER, where]));
  t.after(() => receiver.child.kill('SIGKILL'));
  await receiver.stdout(/full \d+\n/);
  return { tmp, where };
}

/** Lets a server drop keep-alives to the full receiver, stops it with SIGTERM: exit 0, one log line of the drop. Its stderr. */
async function stopsAfterOneDrop(server: Watched): Promise<string> {
  // Room for a few dozen keep-alives at 10 ms, every one dropped.
  await new Promise((r) => setTimeout(r, 300));
  server.child.kill('SIGTERM');
  const [code] = await once(server.child, 'close');
  assert.equal(code, 0);
  const text = await server.stderr(/[\s\S]*/);
  assert.match(text, /stopped\n/);
  assert.equal(text.match(/cannot notify the supervisor/g)?.length, 1, text);
  return text;
}

test(
  'a NOTIFY_SOCKET receiver that stopped reading: notify() fails at once, and secpolicy proxy keeps serving, logs the drop once and exits on SIGTERM',
  { skip: needCommand('python3'), timeout: 60_000 },
  async (t) => {
    const { tmp, where } = await fullReceiver(t);

    // The library call: a coded error with EAGAIN, not a blocked thread.
    const script = `import * as sp from ${JSON.stringify(INDEX)};
      try { sp.notify('READY=1'); console.log('sent'); } catch (e) { console.log(JSON.stringify({ code: e.code, errno: e.errno, message: e.message })); }`;
    const lib = await run(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, NOTIFY_SOCKET: where },
    }).output();
    const failure = JSON.parse(lib.stdout) as { code: string; errno: number; message: string };
    assert.equal(failure.code, 'ERR_SECPOLICY_NOTIFY', lib.stderr);
    assert.equal(failure.errno, 11);
    assert.match(failure.message, /queue is full.*dropped/);

    await echoTarget(t, tmp);
    const proxy = watch(
      run(
        process.execPath,
        [CLI, 'proxy', '--listen', tmp.path('p.sock'), '--to', tmp.path('target.sock'), '--policy', tmp.path('policy.yaml')],
        {
          env: { ...process.env, NOTIFY_SOCKET: where, WATCHDOG_USEC: '20000' },
        },
      ),
    );
    t.after(() => proxy.child.kill('SIGKILL'));
    await proxy.stderr(/cannot notify the supervisor: .*queue is full/);
    for (let i = 0; i < 3; i++) {
      const client = net.connect(tmp.path('p.sock'));
      client.end(`connection ${i}`);
      let echoed = '';
      client.on('data', (d) => (echoed += d));
      await once(client, 'close');
      assert.equal(echoed, `connection ${i}`);
    }
    const text = await stopsAfterOneDrop(proxy);
    assert.doesNotMatch(text, /works again/);
  },
);

test(
  'a NOTIFY_SOCKET receiver that stopped reading: secpolicy gateway keeps answering requests, logs the drop once and exits on SIGTERM',
  { skip: needCommand('python3'), timeout: 60_000 },
  async (t) => {
    const { tmp, where } = await fullReceiver(t);

    const upstream = http.createServer((req, res) => res.end(JSON.stringify({ url: req.url }))).listen(tmp.path('up.sock'));
    await once(upstream, 'listening');
    t.after(() => upstream.close());
    writeFileSync(
      tmp.path('gateway.yaml'),
      ['version: 1', 'api: docker', 'rules:', '  - name: me', `    who: { uid: ${process.getuid!()} }`, '    allow: ["GET /**"]'].join(
        '\n',
      ),
    );
    const gateway = watch(
      run(
        process.execPath,
        [CLI, 'gateway', '--listen', tmp.path('gw.sock'), '--to', tmp.path('up.sock'), '--policy', tmp.path('gateway.yaml')],
        { env: { ...process.env, NOTIFY_SOCKET: where, WATCHDOG_USEC: '20000' } },
      ),
    );
    t.after(() => gateway.child.kill('SIGKILL'));
    await gateway.stderr(/cannot notify the supervisor: .*queue is full/);
    for (let i = 0; i < 3; i++) {
      const res = await new Promise<http.IncomingMessage>((resolve, reject) =>
        http.get({ socketPath: tmp.path('gw.sock'), path: `/v1.41/containers/json?n=${i}` }, resolve).on('error', reject),
      );
      let body = '';
      res.on('data', (d) => (body += d));
      await once(res, 'end');
      assert.equal(res.statusCode, 200, body);
      assert.match(body, new RegExp(`containers/json\\?n=${i}`));
    }
    await stopsAfterOneDrop(gateway);
  },
);

test('proxy --listen systemd without activation: a coded error and exit 2, nothing listens', async () => {
  const tmp = tempDir('secpolicy-notify-');
  try {
    writeFileSync(tmp.path('policy.yaml'), 'uid: 0\n');
    const env = { ...process.env };
    delete env.LISTEN_FDS;
    delete env.LISTEN_PID;
    const { code, stderr } = await run(
      process.execPath,
      [CLI, 'proxy', '--listen', 'systemd', '--to', tmp.path('t.sock'), '--policy', tmp.path('policy.yaml')],
      { env },
    ).output();
    assert.equal(code, 2);
    assert.match(stderr, /ERR_SECPOLICY_SOCKET_ACTIVATION.*no sockets were passed by systemd/);
  } finally {
    tmp.cleanup();
  }
});
