/**
 * The perms rule on the server side reads the socket file the listener is bound to,
 * through an fd held since listen(), not whatever the path names at apply time. The
 * attacks: another user binds a socket of a wider mode elsewhere and renames it over our
 * path (a directory others may write to: `allowInsecureDirectory`, or a plain net.Server);
 * a connection that came through our listener must not be judged by the impostor's mode.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chmodSync, linkSync, lstatSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { listen, Policy, Result } from '../../src/index.js';
import { nodePeer, DAEMON } from '../helpers/connection.js';
import { closeServer, isRoot, needCommand, needNative, needRoot, run, tempDir } from '../helpers/index.js';
import { watch } from '../systemd/watch.js';

const PY = '/usr/bin/python3';
const INDEX = fileURLToPath(new URL('../../src/index.js', import.meta.url));
const LISTENERS = fileURLToPath(new URL('../../src/systemd/listeners.js', import.meta.url));
const skip = needNative('netlink');

/** A directory that other users may write to (no sticky bit): anyone can rename a file over ours. */
function openDir(t: TestContext) {
  const tmp = tempDir('secpolicy-held-');
  chmodSync(tmp.dir, 0o777);
  t.after(() => tmp.cleanup());
  return tmp;
}

/** A paused server (the peer's EOF must not destroy our end before the test applies). */
function pausedServer(t: TestContext): net.Server {
  const server = net.createServer({ pauseOnConnect: true });
  const accepted = new Set<net.Socket>();
  server.on('connection', (s) => accepted.add(s));
  t.after(async () => {
    for (const s of accepted) s.destroy();
    if (server.listening) await closeServer(server);
  });
  return server;
}

/** A node peer connects to `path` and holds the connection; resolves with our accepted end (`release()` lets the peer go). */
async function accept(t: TestContext, server: net.Server, path: string): Promise<net.Socket & { release(): Promise<void> }> {
  const accepted = once(server, 'connection').then(([s]) => s as net.Socket);
  const [cmd, args] = nodePeer()(path);
  const peer = run(cmd, args);
  const exited = peer.output().then((o) => Promise.reject(new Error(`peer exited (${o.code}) before connecting: ${o.stderr}`)));
  exited.catch(() => {});
  const end = async () => {
    peer.stdin?.end();
    await peer.output();
  };
  t.after(end);
  const socket = await Promise.race([accepted, exited]);
  t.after(() => socket.destroy());
  return Object.assign(socket, { release: end });
}

/**
 * The attacker: another user (daemon, when we are root) binds a listening socket of mode
 * 0666 beside ours and renames it over `path`; it keeps listening until the test ends.
 */
async function swapIn(t: TestContext, dir: string, path: string): Promise<void> {
  const script = [
    'import os,socket,sys',
    's=socket.socket(socket.AF_UNIX)',
    `s.bind(${JSON.stringify(`${dir}/impostor.sock`)})`,
    `os.chmod(${JSON.stringify(`${dir}/impostor.sock`)},0o666)`,
    's.listen(1)',
    `os.rename(${JSON.stringify(`${dir}/impostor.sock`)},${JSON.stringify(path)})`,
    "print('swapped',flush=True)",
    'sys.stdin.read()',
  ].join('\n');
  const attacker = watch(run(PY, ['-c', script], isRoot ? { as: DAEMON } : {}));
  t.after(() => attacker.child.kill('SIGKILL'));
  await attacker.stdout(/swapped/);
  // The attack took place: the path now names the impostor's socket.
  const s = lstatSync(path);
  assert.ok(s.isSocket());
  assert.equal(s.mode & 0o777, 0o666);
  if (isRoot) assert.equal(s.uid, DAEMON.uid);
}

/** Our fds that are the socket file at `path` (O_PATH fds link to the path; sockets link to socket:[N]). */
function fdsOnFile(path: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc/self/fd')) {
    try {
      const link = readlinkSync(`/proc/self/fd/${name}`);
      if (link === path || link === `${path} (deleted)`) out.push(Number(name));
    } catch {
      // The fd readdir used itself, closed by now.
    }
  }
  return out;
}

test(
  'a socket renamed over the path after listen(): a connection to our listener is judged by our file (0600), not the impostor (0666)',
  { skip },
  async (t) => {
    const tmp = openDir(t);
    const path = tmp.path('app.sock');
    const server = pausedServer(t);
    await listen(server, path, { mode: 0o600, allowInsecureDirectory: true });
    const socket = await accept(t, server, path);
    await swapIn(t, tmp.dir, path);

    const ours = await new Policy().perms(0o600).apply(socket);
    assert.equal(ours.allowed, true, JSON.stringify(ours.failures));
    assert.equal(ours.peer.perms, 0o600);
    const theirs = await new Policy().perms(0o666).apply(socket);
    assert.equal(theirs.allowed, false);
    assert.equal(theirs.result, Result.PERMS);
    assert.equal(theirs.failures[0]!.actual, 0o600);
    assert.match(theirs.failures[0]!.message, /socket file mode 0600 is not 0666/);
  },
);

test('a plain net.Server whose path is replaced before the first apply: perms is unknown, never the impostor mode', { skip }, async (t) => {
  const tmp = openDir(t);
  const path = tmp.path('plain.sock');
  const server = pausedServer(t);
  server.listen(path);
  await once(server, 'listening');
  chmodSync(path, 0o600);
  linkSync(path, tmp.path('kept.sock'));
  const socket = await accept(t, server, path);
  await swapIn(t, tmp.dir, path);

  for (const mode of [0o666, 0o600]) {
    const d = await new Policy().perms(mode).apply(socket);
    assert.equal(d.allowed, false);
    assert.equal(d.result, Result.PERMS);
    assert.equal(d.failures[0]!.unknown, true, JSON.stringify(d.failures));
    assert.equal(d.failures[0]!.actual, undefined);
    assert.match(d.failures[0]!.message, /not the one this server listens on \(it was replaced after bind\)/);
    assert.equal(d.peer.perms, undefined);
  }
  // Putting our file back (through a link kept before the swap) does not revive a mode
  // once unproven for this listen(): what the path named is not evidence, so it stays unknown.
  renameSync(tmp.path('kept.sock'), path);
  const again = await new Policy().perms(0o600).apply(socket);
  assert.equal(again.failures[0]?.unknown, true);
});

test('a plain net.Server is held on its first apply: a later swap does not change what perms reads', { skip }, async (t) => {
  const tmp = openDir(t);
  const path = tmp.path('plain.sock');
  const server = pausedServer(t);
  server.listen(path);
  await once(server, 'listening');
  chmodSync(path, 0o640);
  const first = await accept(t, server, path);
  assert.equal((await new Policy().perms(0o640).apply(first)).allowed, true);
  assert.deepEqual(fdsOnFile(path).length, 1, 'the file is held from the first apply');
  await swapIn(t, tmp.dir, path);
  const d = await new Policy().perms(0o640).apply(first);
  assert.equal(d.allowed, true, JSON.stringify(d.failures));
  assert.equal(d.peer.perms, 0o640);
});

test('chmod of the real socket file after listen() is seen: the held fd names the same inode', { skip }, async (t) => {
  const tmp = tempDir('secpolicy-held-');
  t.after(() => tmp.cleanup());
  const path = tmp.path('app.sock');
  const server = pausedServer(t);
  await listen(server, path, { mode: 0o600 });
  const socket = await accept(t, server, path);
  assert.equal((await new Policy().perms(0o600).apply(socket)).allowed, true);
  for (const mode of [0o660, 0o666, 0o000, 0o600]) {
    chmodSync(path, mode);
    const pass = await new Policy().perms(mode).apply(socket);
    assert.equal(pass.allowed, true, `mode 0${mode.toString(8)}: ${JSON.stringify(pass.failures)}`);
    const other = mode === 0o600 ? 0o660 : 0o600;
    const fail = await new Policy().perms(other).apply(socket);
    assert.equal(fail.failures[0]!.actual, mode);
    assert.notEqual(fail.failures[0]!.unknown, true);
  }
});

test(
  'the socket file unlinked after listen(): the mode is still read from the held fd, and a file put at the path is not',
  { skip },
  async (t) => {
    const tmp = tempDir('secpolicy-held-');
    t.after(() => tmp.cleanup());
    const path = tmp.path('app.sock');
    const server = pausedServer(t);
    await listen(server, path, { mode: 0o660 });
    const socket = await accept(t, server, path);
    rmSync(path);
    const gone = await new Policy().perms(0o660).apply(socket);
    assert.equal(gone.allowed, true, JSON.stringify(gone.failures));
    writeFileSync(path, '', { mode: 0o666 });
    const other = await new Policy().perms(0o666).apply(socket);
    assert.equal(other.allowed, false);
    assert.equal(other.failures[0]!.actual, 0o660);
    rmSync(path);
  },
);

test('the held fd is one O_PATH fd per listener, closed when the server closes (listen() and plain servers)', { skip }, async (t) => {
  const tmp = tempDir('secpolicy-held-');
  t.after(() => tmp.cleanup());
  const count = () => readdirSync('/proc/self/fd').length;
  const cycle = async (i: number) => {
    const path = tmp.path(`c${i}.sock`);
    const server = net.createServer({ pauseOnConnect: true });
    if (i % 2 === 0) await listen(server, path);
    else {
      server.listen(path);
      await once(server, 'listening');
    }
    const socket = await accept(t, server, path);
    assert.equal((await new Policy().perms(i % 2 === 0 ? 0o600 : lstatSync(path).mode & 0o777).apply(socket)).allowed, true);
    const held = fdsOnFile(path);
    assert.equal(held.length, 1, `one held fd on ${path}`);
    const flags = Number.parseInt(/flags:\s+([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${held[0]}`, 'utf8'))![1]!, 8);
    assert.ok(flags & 0o10000000, 'the held fd is O_PATH');
    socket.destroy();
    await socket.release();
    await closeServer(server);
    assert.deepEqual(fdsOnFile(path), [], `the held fd on ${path} is closed with the server`);
  };
  // The first cycles open what stays open for the process (the sock_diag socket, peers' pipes settle).
  await cycle(0);
  await cycle(1);
  const before = count();
  for (let i = 2; i < 12; i++) await cycle(i);
  assert.equal(count(), before, 'no fd left behind after ten listeners came and went');
});

test('a server closed while connections remain still reads its file for them, and lets it go at its close event', { skip }, async (t) => {
  const tmp = tempDir('secpolicy-held-');
  t.after(() => tmp.cleanup());
  const path = tmp.path('app.sock');
  const server = pausedServer(t);
  await listen(server, path, { mode: 0o640 });
  const socket = await accept(t, server, path);
  const closed = once(server, 'close');
  server.close();
  const d = await new Policy().perms(0o640).apply(socket);
  assert.equal(d.allowed, true, JSON.stringify(d.failures));
  assert.equal(fdsOnFile(path).length, 1);
  socket.destroy();
  await closed;
  assert.deepEqual(fdsOnFile(path), []);
});

test('a server closed and listening again on another path reads its new file', { skip }, async (t) => {
  const tmp = tempDir('secpolicy-held-');
  t.after(() => tmp.cleanup());
  const server = pausedServer(t);
  await listen(server, tmp.path('a.sock'), { mode: 0o600 });
  const a = await accept(t, server, tmp.path('a.sock'));
  assert.equal((await new Policy().perms(0o600).apply(a)).allowed, true);
  a.destroy();
  await closeServer(server);
  await listen(server, tmp.path('b.sock'), { mode: 0o660 });
  const b = await accept(t, server, tmp.path('b.sock'));
  const d = await new Policy().perms(0o660).apply(b);
  assert.equal(d.allowed, true, JSON.stringify(d.failures));
  assert.deepEqual(fdsOnFile(tmp.path('a.sock')), []);
  assert.equal(fdsOnFile(tmp.path('b.sock')).length, 1);
});

test(
  'listen() refuses a path that names another socket right after its bind, and gives that socket neither owner nor group',
  { skip: skip || needRoot('chowns the socket file') },
  async (t) => {
    const tmp = openDir(t);
    const path = tmp.path('app.sock');
    // The impostor: a live socket of the very mode asked for, so that a check of the path alone passes.
    const impostor = net.createServer();
    t.after(() => (impostor.listening ? closeServer(impostor) : undefined));
    impostor.listen(tmp.path('impostor.sock'));
    await once(impostor, 'listening');
    chmodSync(tmp.path('impostor.sock'), 0o600);
    // A second name for the impostor's file: Node unlinks the path when the refused server closes.
    linkSync(tmp.path('impostor.sock'), tmp.path('impostor-link.sock'));
    const server = net.createServer();
    t.after(() => (server.listening ? closeServer(server) : undefined));
    // The swap lands in the narrowest window there is: inside server.listen(), after its bind.
    const bind = server.listen.bind(server) as (...args: unknown[]) => net.Server;
    (server as { listen: unknown }).listen = (...args: unknown[]) => {
      const r = bind(...args);
      renameSync(tmp.path('impostor.sock'), path);
      return r;
    };
    await assert.rejects(listen(server, path, { mode: 0o600, allowInsecureDirectory: true, group: 1 }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ERR_SECPOLICY_UNSAFE_PATH');
      assert.match(e.message, /not the one this server listens on/);
      return true;
    });
    assert.equal(lstatSync(tmp.path('impostor-link.sock')).gid, 0, 'the impostor socket was not given our group');
  },
);

test(
  'a listener that sock_diag cannot see (made in another network namespace): perms is unknown, not the mode at the path',
  { skip: skip || needRoot('enters network namespaces') || needCommand('unshare', 'nsenter') },
  async (t) => {
    const tmp = tempDir('secpolicy-held-');
    t.after(() => tmp.cleanup());
    const path = tmp.path('ns.sock');
    const service = tmp.path('service.mjs');
    // Runs in our network namespace with a listener made in another one: our sock_diag does not know it.
    writeFileSync(
      service,
      `import net from 'node:net';
      import { Policy } from ${JSON.stringify(INDEX)};
      import { listenOnFd } from ${JSON.stringify(LISTENERS)};
      const server = listenOnFd(net.createServer({ pauseOnConnect: true }), Number(process.argv[2]));
      server.on('connection', async (socket) => {
        const d = await new Policy().perms(0o600).apply(socket);
        process.stdout.write(JSON.stringify({ allowed: d.allowed, failure: d.failures[0] }) + '\\n');
        process.exit(0);
      });
      net.connect(${JSON.stringify(path)});`,
    );
    // python binds and listens inside a new network namespace, then execs node back in ours (fd kept).
    const script = [
      'import os,socket,sys',
      's=socket.socket(socket.AF_UNIX)',
      `s.bind(${JSON.stringify(path)})`,
      `os.chmod(${JSON.stringify(path)},0o600)`,
      's.listen(4)',
      's.set_inheritable(True)',
      `os.execvp('nsenter',['nsenter','--net=/proc/${process.pid}/ns/net','--',${JSON.stringify(process.execPath)},${JSON.stringify(service)},str(s.fileno())])`,
    ].join('\n');
    const child = run('unshare', ['-n', PY, '-c', script]);
    t.after(() => child.kill('SIGKILL'));
    const out = await child.output();
    assert.equal(out.code, 0, out.stderr);
    const r = JSON.parse(out.stdout) as { allowed: boolean; failure: { unknown?: boolean; message: string } };
    assert.equal(r.allowed, false);
    assert.equal(r.failure.unknown, true);
    assert.match(r.failure.message, /cannot tell which file the server listens on: sock_diag does not know the listening socket/);
  },
);

// A cluster worker's server has no listening fd (the primary accepts for it): the file is
// proven through a connection it was handed, whose sock_diag record names the same file.
test('a cluster worker reads the socket file it serves through a connection it was handed', { skip }, async (t) => {
  const tmp = tempDir('secpolicy-cluster-');
  t.after(() => tmp.cleanup());
  const path = tmp.path('s.sock');
  const script = `
const cluster = require('node:cluster');
const net = require('node:net');
const path = ${JSON.stringify(path)};
if (cluster.isPrimary) {
  const w = cluster.fork();
  w.on('message', (m) => { console.log(m); w.kill(); });
  w.on('listening', () => net.connect(path).on('error', () => {}));
} else {
  import(${JSON.stringify(INDEX)}).then(({ Policy }) => {
    const server = net.createServer({ pauseOnConnect: true }, (socket) => {
      const say = (p) => { const d = p.applySync(socket); return d.allowed ? 'allowed' : d.failures.map((f) => (f.unknown ? 'unknown ' : '') + f.rule).join(','); };
      process.send(say(new Policy().perms(0o755)) + ' ' + say(new Policy().perms(0o600)));
    });
    server.listen(path, () => require('node:fs').chmodSync(path, 0o755));
  });
}`;
  // cluster.fork() runs the primary's script file again: a file, not -e.
  const file = tmp.path('cluster.cjs');
  writeFileSync(file, script);
  const out = await run(process.execPath, [file]).output();
  assert.equal(out.stdout.trim(), 'allowed perms', out.stderr);
});
