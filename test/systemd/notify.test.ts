/**
 * Readiness, stopping and the watchdog, read by a real supervisor-side datagram socket
 * (python3), from `secpolicy proxy` running socket-activated under systemd-socket-activate.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
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
      writeFileSync(tmp.path('policy.yaml'), `uid: ${process.getuid!()}\n`);
      const echo = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s)).listen(tmp.path('target.sock'));
      await once(echo, 'listening');
      t.after(() => echo.close());
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
    out.otherPid = sp.startWatchdog() === undefined;
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
      interval: 50,
    },
    stderr,
  );
});

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
