import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { listUnixSockets, unixPeerInode, unixSocket } from '../../src/native/sock-diag.js';
import { procNetUnix, socketInode } from '../../src/native/unix-sockets.js';
import { socketFd, statPath } from '../../src/native/index.js';
import { closeServer, listenOn, needNative, needRoot, nextConnection, run, tempDir } from '../helpers/index.js';

const PY = '/usr/bin/python3';

/** A python3 client run as `uid` that connects to `path` and waits for stdin to close. */
function pythonClient(path: string, uid: number) {
  const script = `import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(${JSON.stringify(path)})\nprint('up',flush=True)\nsys.stdin.read()`;
  return run(PY, ['-c', script], { as: { uid, gid: uid } });
}

test(
  'netlink lists a listening socket with its file identity, and an accepted socket with its peer and uid',
  { skip: needRoot() || needNative('netlink') },
  async (t) => {
    const tmp = tempDir('secpolicy-sockdiag-');
    const path = tmp.path('s.sock');
    // 0666: the client runs as another user and needs write permission on the socket file.
    const server = await listenOn(path, () => {}, 0o666);
    const client = pythonClient(path, 1);
    t.after(async () => {
      client.kill();
      await closeServer(server);
      tmp.cleanup();
    });
    const accepted = await Promise.race([
      nextConnection(server),
      client.output().then((o) => Promise.reject(new Error(`client exited: ${o.stderr}`))),
    ]);
    const list = listUnixSockets();
    assert.equal(list.source, 'netlink');
    const listening = list.sockets.filter((s) => s.name === path && s.state === 'listen');
    assert.equal(listening.length, 1);
    const file = statPath(path, true)!;
    assert.deepEqual(listening[0]!.vfs, { dev: file.dev, ino: Number(file.ino) });
    assert.equal(listening[0]!.uid, 0);

    const ours = socketInode(socketFd(accepted))!;
    assert.ok(ours > 0);
    const mine = unixSocket(ours)!;
    assert.equal(mine.state, 'established');
    assert.equal(mine.type, 'stream');
    assert.equal(mine.name, path);
    const theirs = unixSocket(mine.peer!)!;
    // The client's socket is owned by the user python ran as, and points back at ours.
    assert.equal(theirs.uid, 1);
    assert.equal(theirs.peer, ours);
    assert.equal(unixPeerInode(ours), mine.peer);
    assert.ok(list.sockets.some((s) => s.inode === mine.peer && s.uid === 1));
  },
);

test(
  'an accepted socket from another network namespace is found through `via` (the connecting side owns the namespace)',
  { skip: needRoot() || needNative('netlink') },
  async (t) => {
    const tmp = tempDir('secpolicy-sockdiag-');
    const path = tmp.path('n.sock');
    const server = await listenOn(path, () => {}, 0o666);
    const client = run('unshare', [
      '--net',
      PY,
      '-c',
      `import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(${JSON.stringify(path)})\nsys.stdin.read()`,
    ]);
    t.after(async () => {
      client.kill();
      await closeServer(server);
      tmp.cleanup();
    });
    const accepted = await Promise.race([
      nextConnection(server),
      client.output().then((o) => Promise.reject(new Error(`client exited: ${o.stderr}`))),
    ]);
    const fd = socketFd(accepted);
    const ours = socketInode(fd)!;
    assert.equal(unixSocket(ours), undefined, 'not in our network namespace');
    const found = unixSocket(ours, { via: fd })!;
    assert.equal(found.state, 'established');
    assert.equal(unixSocket(found.peer!, { via: fd })!.peer, ours);
    assert.equal(unixPeerInode(ours, { via: fd }), found.peer);
  },
);

test('abstract names are shown as @name; states filter the dump', { skip: needNative('netlink') }, async (t) => {
  const name = `secpolicy-sockdiag-${process.pid}-${Date.now()}`;
  const server = net.createServer().listen(`\0${name}`);
  await once(server, 'listening');
  t.after(() => closeServer(server));
  const listen = listUnixSockets({ states: ['listen'] });
  assert.ok(listen.sockets.every((s) => s.state === 'listen'));
  const found = listen.sockets.find((s) => s.name === `@${name}`);
  assert.ok(found, 'abstract listener present');
  assert.equal(found.vfs, undefined);
  assert.ok(!listUnixSockets({ states: ['established'] }).sockets.some((s) => s.inode === found.inode));
});

test('a closed socket is not found; a socket that never existed neither', { skip: needNative('netlink') }, async () => {
  const name = `secpolicy-sockdiag-gone-${process.pid}`;
  const server = net.createServer().listen(`\0${name}`);
  await once(server, 'listening');
  const inode = listUnixSockets({ states: ['listen'] }).sockets.find((s) => s.name === `@${name}`)!.inode;
  assert.equal(unixSocket(inode)?.state, 'listen');
  await closeServer(server);
  assert.equal(unixSocket(inode), undefined);
  assert.equal(unixPeerInode(inode), undefined);
});

test('/proc/net/unix agrees with netlink on the listening sockets', { skip: needNative('netlink') }, async (t) => {
  const tmp = tempDir('secpolicy-sockdiag-');
  const server = await listenOn(tmp.path('p.sock'), () => {});
  t.after(async () => {
    await closeServer(server);
    tmp.cleanup();
  });
  // Other processes on the host open and close listeners between the two reads: the
  // listings must agree on a read where nothing changed (one of a few in a row).
  const read = () => ({
    fromProc: procNetUnix()
      .filter((s) => s.state === 'listen')
      .map((s) => s.inode)
      .sort(),
    fromNetlink: listUnixSockets({ states: ['listen'] })
      .sockets.map((s) => s.inode)
      .sort(),
  });
  let last = read();
  for (let i = 0; i < 20 && JSON.stringify(last.fromProc) !== JSON.stringify(last.fromNetlink); i++) last = read();
  assert.ok(last.fromNetlink.length > 0);
  assert.deepEqual(last.fromProc, last.fromNetlink);
});

test('procNetUnix parses real lines: listening, connected, datagram, abstract, paths with spaces', () => {
  const text = [
    'Num       RefCount Protocol Flags    Type St Inode Path',
    'ffff8881003a1c00: 00000002 00000000 00010000 0001 01 22911 /run/systemd/private',
    'ffff8881003a3400: 00000003 00000000 00000000 0001 03 31337 /run/dbus/system_bus_socket',
    'ffff8881003a2000: 00000002 00000000 00000000 0002 01 18000',
    'ffff8881003a4800: 00000002 00000000 00010000 0001 01 40001 @/tmp/.X11-unix/X0',
    'ffff8881003a5c00: 00000002 00000000 00010000 0005 01 40002 /tmp/dir with space/s.sock',
    'garbage',
    '',
  ].join('\n');
  assert.deepEqual(procNetUnix(text), [
    { inode: 22911, type: 'stream', state: 'listen', name: '/run/systemd/private' },
    { inode: 31337, type: 'stream', state: 'established', name: '/run/dbus/system_bus_socket' },
    { inode: 18000, type: 'dgram', state: 'unconnected' },
    { inode: 40001, type: 'stream', state: 'listen', name: '@/tmp/.X11-unix/X0' },
    { inode: 40002, type: 'seqpacket', state: 'listen', name: '/tmp/dir with space/s.sock' },
  ]);
});

test('bad arguments are ERR_SECPOLICY_INVALID_ARG naming the field', () => {
  const invalid = (field: string) => (e: unknown) =>
    (e as { code: string }).code === 'ERR_SECPOLICY_INVALID_ARG' && (e as Error).message.includes(field);
  assert.throws(() => listUnixSockets({ states: ['bogus' as 'listen'] }), invalid('options.states[0]'));
  assert.throws(() => listUnixSockets({ states: [] }), invalid('options.states'));
  assert.throws(() => listUnixSockets({ states: ['listen', 'constructor' as 'listen'] }), invalid('options.states[1]'));
  assert.throws(() => listUnixSockets({ fallback: 'yes' as unknown as boolean }), invalid('options.fallback'));
  assert.throws(() => unixSocket(-1), invalid('inode'));
  assert.throws(() => unixSocket(1.5), invalid('inode'));
  assert.throws(() => unixSocket(5, { via: -1 }), invalid('options.via'));
  assert.equal(socketInode(1_000_000), undefined);
});

test('a listener lists the connecting ends waiting in its accept queue (UNIX_DIAG_ICONS)', { skip: needNative('netlink') }, async (t) => {
  const tmp = tempDir('secpolicy-icons-');
  const path = tmp.path('l.sock');
  // A python listener that never accepts: the connection stays in its accept queue.
  const listener = run(PY, [
    '-c',
    `import socket,sys\nl=socket.socket(socket.AF_UNIX)\nl.bind(sys.argv[1])\nl.listen(4)\nprint('up',flush=True)\nsys.stdin.read()`,
    path,
  ]);
  t.after(() => {
    listener.kill();
    tmp.cleanup();
  });
  await new Promise<void>((resolve, reject) => {
    listener.stdout!.on('data', (d) => String(d).includes('up') && resolve());
    listener.output().then((o) => reject(new Error(o.stderr)));
  });
  const client = net.connect(path);
  await once(client, 'connect');
  t.after(() => client.destroy());
  const ours = socketInode(socketFd(client))!;
  const listed = listUnixSockets({ states: ['listen'] }).sockets.find((s) => s.name === path)!;
  assert.ok(listed, 'the listener is listed');
  assert.deepEqual(listed.icons, [ours]);
  // The connecting end has a peer with no inode yet: the connection was not accepted.
  assert.equal(unixSocket(ours)!.peer, 0);
});
