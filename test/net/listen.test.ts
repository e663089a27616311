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
} from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import { test, type TestContext } from 'node:test';
import { ErrorCode, listen } from '../../src/index.js';
import { closeServer, needCommand, needRoot, nodeClient, run, tempDir } from '../helpers/index.js';
import { DAEMON, rejectsWith } from './fixtures.js';

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
  'listen: the socket file is born with the exact mode, whatever the umask, and the umask is restored',
  { timeout: 60_000 },
  async (t) => {
    const { path, server } = setup(t);
    const file = path('s.sock');
    const s = server();
    // Look at the file the moment bind() returns, before listen() could run any chmod.
    let atBind: number | undefined;
    const realListen = s.listen;
    s.listen = function (this: net.Server, ...args: unknown[]) {
      const r = (realListen as (...a: unknown[]) => net.Server).apply(this, args);
      atBind = modeOf(file);
      return r;
    } as typeof s.listen;
    const umask = process.umask(0);
    try {
      await listen(s, file, { mode: 0o660 });
      assert.equal(process.umask(), 0, "the caller's umask is back");
    } finally {
      process.umask(umask);
    }
    assert.equal(atBind, 0o660);
    assert.equal(modeOf(file), 0o660);
    assert.ok(lstatSync(file).isSocket());
    assert.equal(s.address(), file);
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

test('listen: a worker thread, which cannot set the umask, is refused rather than served a window', { timeout: 60_000 }, async (t) => {
  const { path } = setup(t);
  const index = new URL('../../src/index.js', import.meta.url).href;
  const code = `const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.index).then(async ({ listen }) => {
      const server = require('node:net').createServer();
      try { await listen(server, workerData.file); parentPort.postMessage('listening'); server.close(); }
      catch (e) { parentPort.postMessage(e.code); }
    });`;
  const worker = new Worker(code, { eval: true, workerData: { index, file: path('w.sock') } });
  const [answer] = await once(worker, 'message');
  await worker.terminate();
  assert.equal(answer, ErrorCode.UNSAFE_PATH);
  assert.equal(existsSync(path('w.sock')), false);
});

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
