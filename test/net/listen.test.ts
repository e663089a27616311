import assert from 'node:assert/strict';
import {
  chmodSync,
  chownSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
  existsSync,
  readdirSync,
  rmSync,
} from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import { test, type TestContext } from 'node:test';
import { ErrorCode, listen } from '../../src/index.js';
import { remoteAddress, socketFd } from '../../src/native/index.js';
import { closeServer, needCommand, needRoot, nodeClient, run, tempDir } from '../helpers/index.js';
import { DAEMON, NOBODY, rejectsWith } from './fixtures.js';

/** A fresh directory and a server that is closed after the test. */
function setup(t: TestContext) {
  const tmp = tempDir('secpolicy-listen-');
  const servers: net.Server[] = [];
  t.after(async () => {
    for (const s of servers) if (s.listening) await closeServer(s);
    tmp.cleanup();
  });
  const server = () => {
    const s = net.createServer((socket) => socket.on('error', () => {}).end('hi'));
    servers.push(s);
    return s;
  };
  return { ...tmp, server };
}

const modeOf = (path: string) => lstatSync(path).mode & 0o7777;

test(
  'listen: the socket file has the exact mode whatever the umask, the umask is never changed, and every name of the socket is the path',
  { timeout: 60_000 },
  async (t) => {
    const { path, server } = setup(t);
    for (const [i, umask] of [0, 0o022, 0o077, 0o777].entries()) {
      const file = path(`s${i}.sock`);
      const s = server();
      // Look at the file the moment Node is handed the socket: its mode must be final already.
      let atListen: number | undefined;
      const realListen = s.listen;
      s.listen = function (this: net.Server, ...args: unknown[]) {
        if (existsSync(file)) atListen = modeOf(file);
        const r = (realListen as (...a: unknown[]) => net.Server).apply(this, args);
        atListen ??= modeOf(file);
        return r;
      } as typeof s.listen;
      const previous = process.umask(umask);
      try {
        await listen(s, file, { mode: 0o660 });
      } finally {
        assert.equal(process.umask(previous), umask, "the caller's umask was never touched");
      }
      assert.equal(atListen, 0o660, `umask ${umask.toString(8)}`);
      assert.equal(modeOf(file), 0o660, `umask ${umask.toString(8)}`);
      assert.ok(lstatSync(file).isSocket());
      assert.equal(s.address(), file);
      // The kernel's name of the socket is the path itself: a client's getpeername() says so.
      const client = net.connect(file);
      await once(client, 'connect');
      assert.deepEqual(remoteAddress(socketFd(client)), { kind: 'path', path: file });
      client.destroy();
    }
  },
);

test('listen: the default mode is 0600; the file goes away when the server closes', { timeout: 60_000 }, async (t) => {
  const { path, server } = setup(t);
  const s = server();
  await listen(s, path('s.sock'));
  assert.equal(modeOf(path('s.sock')), 0o600);
  await closeServer(s);
  assert.equal(existsSync(path('s.sock')), false);
});

test('listen: owner and group by name and by id; the mode decides who may connect', { timeout: 60_000, skip: needRoot() }, async (t) => {
  const { path, server } = setup(t);
  await listen(server(), path('named.sock'), { owner: 'daemon', group: 'adm', mode: 0o660 });
  const named = lstatSync(path('named.sock'));
  assert.deepEqual([named.uid, named.gid, named.mode & 0o777], [1, 4, 0o660]);
  await listen(server(), path('ids.sock'), { owner: 2, group: 24, mode: 0o600 });
  const ids = lstatSync(path('ids.sock'));
  assert.deepEqual([ids.uid, ids.gid], [2, 24]);

  // daemon owns named.sock (0660): it connects. ids.sock belongs to bin (0600): daemon is refused by the kernel.
  assert.equal((await nodeClient(path('named.sock'), { as: DAEMON }).output()).stdout, 'hi');
  const refused = await nodeClient(path('ids.sock'), { as: DAEMON }).output();
  assert.equal(refused.stdout, '');
  assert.equal(refused.stderr, 'EACCES');
});

test('listen: a symlink at the path is neither followed nor removed', { timeout: 60_000 }, async (t) => {
  const { path, server } = setup(t);
  symlinkSync(path('target.sock'), path('s.sock'));
  await rejectsWith(listen(server(), path('s.sock')), ErrorCode.UNSAFE_PATH, /symbolic link/);
  assert.equal(readlinkSync(path('s.sock')), path('target.sock'));
  assert.equal(existsSync(path('target.sock')), false, 'nothing was created through the link');
});

test('listen: a regular file or a directory at the path is refused and left alone', { timeout: 60_000 }, async (t) => {
  const { path, server } = setup(t);
  writeFileSync(path('file.sock'), 'precious');
  await rejectsWith(listen(server(), path('file.sock')), ErrorCode.UNSAFE_PATH, /not a socket/);
  assert.equal(readFileSync(path('file.sock'), 'utf8'), 'precious');
  mkdirSync(path('dir.sock'));
  await rejectsWith(listen(server(), path('dir.sock')), ErrorCode.UNSAFE_PATH, /not a socket/);
  assert.ok(lstatSync(path('dir.sock')).isDirectory());
});

test('listen: a stale socket (nobody listening) is replaced', { timeout: 60_000, skip: needCommand('/usr/bin/python3') }, async (t) => {
  const { path, server } = setup(t);
  const file = path('s.sock');
  const py = await run('/usr/bin/python3', [
    '-c',
    'import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])',
    file,
  ]).output();
  assert.equal(py.code, 0, py.stderr);
  assert.equal((await nodeClient(file).output()).stderr, 'ECONNREFUSED');
  await listen(server(), file, { mode: 0o600 });
  assert.equal(modeOf(file), 0o600);
  assert.equal((await nodeClient(file).output()).stdout, 'hi');
});

test('listen: a live socket is ERR_SECPOLICY_ADDRESS_IN_USE and keeps serving', { timeout: 60_000 }, async (t) => {
  const { path, server } = setup(t);
  const file = path('s.sock');
  await listen(server(), file);
  const inode = lstatSync(file).ino;
  await rejectsWith(listen(server(), file), ErrorCode.ADDRESS_IN_USE);
  assert.equal(lstatSync(file).ino, inode);
  assert.equal((await nodeClient(file).output()).stdout, 'hi');
});

test('listen: a directory writable by everyone without the sticky bit is refused unless allowed', { timeout: 60_000 }, async (t) => {
  const { path, server } = setup(t);
  mkdirSync(path('open'));
  chmodSync(path('open'), 0o777);
  await rejectsWith(listen(server(), path('open/s.sock')), ErrorCode.UNSAFE_PATH, /writable by every user without the sticky bit/);
  assert.equal(existsSync(path('open/s.sock')), false);
  await listen(server(), path('open/s.sock'), { allowInsecureDirectory: true });
  assert.ok(lstatSync(path('open/s.sock')).isSocket());
  // With the sticky bit others cannot remove or rename our file: accepted.
  mkdirSync(path('sticky'));
  chmodSync(path('sticky'), 0o1777);
  await listen(server(), path('sticky/s.sock'));
  // A directory above the parent counts too.
  mkdirSync(path('open/deeper'));
  await rejectsWith(listen(server(), path('open/deeper/s.sock')), ErrorCode.UNSAFE_PATH, /open is writable/);
});

test(
  'listen: a directory its group may write without the sticky bit is refused unless allowed; a member could replace the socket',
  { timeout: 60_000, skip: needRoot() },
  async (t) => {
    const { path, server } = setup(t);
    const dir = path('group');
    mkdirSync(dir);
    chownSync(dir, 0, DAEMON.gid);
    chmodSync(dir, 0o775);
    await rejectsWith(
      listen(server(), `${dir}/s.sock`),
      ErrorCode.UNSAFE_PATH,
      new RegExp(
        `directory ${dir} is writable by its group \\(gid ${DAEMON.gid}\\) without the sticky bit \\(mode 0775\\).*allowInsecureDirectory`,
      ),
    );
    assert.equal(existsSync(`${dir}/s.sock`), false);
    // Why: with the caller's opt-in, a member of the group (daemon) removes our socket file.
    await listen(server(), `${dir}/s.sock`, { allowInsecureDirectory: true });
    const unlink = (file: string) => run('rm', ['-f', file], { as: DAEMON }).output();
    assert.equal((await unlink(`${dir}/s.sock`)).code, 0);
    assert.equal(existsSync(`${dir}/s.sock`), false, 'a group member removed the socket file');
    // With the sticky bit, members may add files but not remove ours: accepted, and the removal fails.
    chmodSync(dir, 0o1775);
    await listen(server(), `${dir}/t.sock`);
    const out = await unlink(`${dir}/t.sock`);
    assert.notEqual(out.code, 0);
    assert.ok(lstatSync(`${dir}/t.sock`).isSocket(), out.stderr);
  },
);

test('listen: a directory owned by another non-root user is refused', { timeout: 60_000, skip: needRoot() }, async (t) => {
  const { path, server } = setup(t);
  mkdirSync(path('theirs'), { mode: 0o755 });
  chownSync(path('theirs'), DAEMON.uid, DAEMON.gid);
  await rejectsWith(listen(server(), path('theirs/s.sock')), ErrorCode.UNSAFE_PATH, /belongs to uid 1/);
  mkdirSync(path('theirs/ours'), { mode: 0o755 });
  await rejectsWith(listen(server(), path('theirs/ours/s.sock')), ErrorCode.UNSAFE_PATH, /theirs belongs to uid 1/);
  await listen(server(), path('theirs/s.sock'), { allowInsecureDirectory: true });
});

test(
  'listen: a symlinked directory is judged by its target and by who could swap the link',
  { timeout: 60_000, skip: needRoot() },
  async (t) => {
    const { path, server } = setup(t);
    mkdirSync(path('open'));
    chmodSync(path('open'), 0o777);
    symlinkSync(path('open'), path('to-open'));
    await rejectsWith(listen(server(), path('to-open/s.sock')), ErrorCode.UNSAFE_PATH, /open is writable by every user/);
    mkdirSync(path('safe'));
    symlinkSync(path('safe'), path('to-safe'));
    await listen(server(), path('to-safe/s.sock'));
    symlinkSync(path('safe'), path('theirs'));
    lchownSync(path('theirs'), DAEMON.uid, DAEMON.gid);
    await rejectsWith(listen(server(), path('theirs/other.sock')), ErrorCode.UNSAFE_PATH, /symbolic link .*theirs belongs to uid 1/);
  },
);

test('listen: a worker thread listens with the same guarantees (nothing process-wide is changed)', { timeout: 60_000 }, async (t) => {
  const { path } = setup(t);
  const index = new URL('../../src/index.js', import.meta.url).href;
  const code = `const { parentPort, workerData } = require('node:worker_threads');
    const { lstatSync } = require('node:fs');
    import(workerData.index).then(async ({ listen }) => {
      const server = require('node:net').createServer((s) => s.end('from the worker'));
      try {
        await listen(server, workerData.file, { mode: 0o640 });
        const s = lstatSync(workerData.file);
        parentPort.postMessage({ mode: s.mode & 0o7777, socket: s.isSocket(), address: server.address() });
        parentPort.once('message', () => server.close(() => parentPort.postMessage('closed')));
      } catch (e) { parentPort.postMessage(e.code); }
    });`;
  const worker = new Worker(code, { eval: true, workerData: { index, file: path('w.sock') } });
  t.after(() => worker.terminate());
  const [answer] = await once(worker, 'message');
  assert.deepEqual(answer, { mode: 0o640, socket: true, address: path('w.sock') });
  assert.equal((await nodeClient(path('w.sock')).output()).stdout, 'from the worker');
  worker.postMessage('close');
  assert.equal((await once(worker, 'message'))[0], 'closed');
  assert.equal(existsSync(path('w.sock')), false, 'the file goes when the server has closed');
});

test(
  'listen: files the application creates on the threadpool meanwhile get the process umask, never the socket mode',
  { timeout: 120_000 },
  async (t) => {
    const { path, server } = setup(t);
    mkdirSync(path('files'));
    const previous = process.umask(0o022);
    t.after(() => process.umask(previous));
    let stop = false;
    let n = 0;
    // 32 writers keep open(2) calls queued on libuv's threadpool while the main thread listens.
    const writers = Array.from({ length: 32 }, async () => {
      while (!stop) await writeFile(path(`files/${n++}`), 'x', { mode: 0o666 });
    });
    try {
      for (let i = 0; i < 100; i++) {
        const s = server();
        await listen(s, path(`t${i}.sock`), { mode: 0o666 });
        assert.equal(modeOf(path(`t${i}.sock`)), 0o666);
        await closeServer(s);
        // A turn of the event loop: the writers see their files opened and queue the next ones.
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      stop = true;
      await Promise.all(writers);
    }
    const files = readdirSync(path('files'));
    const wrong = files.filter((f) => modeOf(path(`files/${f}`)) !== 0o644).map((f) => `${f}: ${modeOf(path(`files/${f}`)).toString(8)}`);
    assert.deepEqual(wrong, [], `${wrong.length} of ${files.length} files`);
    assert.ok(files.length > 0);
    assert.equal(process.umask(0o022), 0o022);
  },
);

test(
  'listen: nobody connects before owner, group and mode are final (a member of our group spins on connect while we listen again and again)',
  { timeout: 120_000, skip: needRoot() || needCommand('/usr/bin/python3') },
  async (t) => {
    const { path, server } = setup(t);
    const file = path('s.sock');
    // nobody, with our primary group (0) as a supplementary one: the file's group until it is given to daemon's.
    const spinner = run(
      '/usr/bin/python3',
      [
        '-c',
        `import socket, sys
p = sys.argv[1]
print("spinning", flush=True)
while True:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(p)
        print("connected", flush=True)
        sys.exit(0)
    except OSError:
        pass
    finally:
        s.close()`,
        file,
      ],
      { as: { ...NOBODY, groups: [process.getgid!()] } },
    );
    t.after(() => spinner.kill('SIGKILL'));
    let out = '';
    spinner.stdout!.on('data', (d) => (out += d));
    await once(spinner.stdout!, 'data');
    for (let i = 0; i < 100 && !out.includes('connected'); i++) {
      const s = server();
      await listen(s, file, { mode: 0o660, group: DAEMON.gid });
      const st = lstatSync(file);
      assert.deepEqual([st.gid, st.mode & 0o7777], [DAEMON.gid, 0o660]);
      await closeServer(s);
    }
    spinner.kill('SIGKILL');
    await once(spinner, 'close');
    assert.doesNotMatch(out, /connected/, 'a process outside the final group connected before the group was set');
  },
);

test('listen: a cluster worker serves the socket itself, as with exclusive: true', { timeout: 60_000 }, async (t) => {
  const { path } = setup(t);
  const index = new URL('../../src/index.js', import.meta.url).href;
  // cluster.fork() runs the primary's script file again: a file, not -e.
  writeFileSync(
    path('cluster.mjs'),
    `import cluster from 'node:cluster';
import net from 'node:net';
import { lstatSync } from 'node:fs';
import { listen } from ${JSON.stringify(index)};
const file = ${JSON.stringify(path('c.sock'))};
if (cluster.isPrimary) {
  const w = cluster.fork();
  w.on('message', (m) => { console.log(JSON.stringify(m)); w.kill(); });
} else {
  const s = net.createServer((c) => c.end(String(process.pid)));
  await listen(s, file, { mode: 0o640 });
  const c = net.connect(file);
  let answer = '';
  c.on('data', (d) => (answer += d));
  c.on('close', () => process.send({ answer, me: String(process.pid), mode: lstatSync(file).mode & 0o7777, address: s.address(), isPrimary: cluster.isPrimary }));
}
`,
  );
  const { stdout, stderr } = await run(process.execPath, [path('cluster.mjs')]).output();
  const m = JSON.parse(stdout) as Record<string, unknown>;
  assert.equal(m.answer, m.me, `the worker accepted the connection itself: ${stderr}`);
  assert.deepEqual([m.mode, m.address, m.isPrimary], [0o640, path('c.sock'), false]);
});

test(
  'listen: closing the server removes its own file at once, and only its own, not one put at the path meanwhile',
  { timeout: 60_000 },
  async (t) => {
    const { path, server } = setup(t);
    const file = path('s.sock');
    const s = server();
    await listen(s, file);
    const client = net.connect(file);
    await once(client, 'connect');
    const closed = once(s, 'close');
    s.close();
    assert.equal(existsSync(file), false, 'its own file is removed at close(), while a connection is still open');
    client.destroy();
    await closed;
    assert.equal(Object.prototype.hasOwnProperty.call(s, 'close'), false, 'the server is left as it was');
    const again = server();
    await listen(again, file);
    rmSync(file);
    writeFileSync(file, 'someone else put this here');
    await closeServer(again);
    assert.equal(readFileSync(file, 'utf8'), 'someone else put this here');
  },
);

test('listen: bad arguments are refused up front, naming the field', { timeout: 60_000 }, async (t) => {
  const { path, server } = setup(t);
  const bad = (p: Promise<unknown>, field: RegExp) => rejectsWith(p, ErrorCode.INVALID_ARG, field);
  const file = path('s.sock');
  await bad(listen(server(), file, { owner: 'no-such-user-here' }), /options\.owner/);
  await bad(listen(server(), file, { group: 'no-such-group-here' }), /options\.group/);
  await bad(listen(server(), file, { owner: -1 }), /options\.owner/);
  await bad(listen(server(), file, { mode: 0o1000 }), /options\.mode/);
  await bad(listen(server(), file, { backlog: 0 }), /options\.backlog/);
  await bad(listen(server(), file, { allowInsecureDirectory: 'yes' as never }), /allowInsecureDirectory/);
  await bad(listen(server(), '\0abstract'), /path/);
  await bad(listen(server(), path('x'.repeat(120))), /sun_path/);
  await bad(listen({} as never, file), /server/);
  const s = server();
  await listen(s, file);
  await bad(listen(s, path('other.sock')), /server/);
  assert.equal(existsSync(path('other.sock')), false);
  await bad(listen(server(), file, null as never), /options/);
});
