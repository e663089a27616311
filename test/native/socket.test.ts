/** The socket-level kernel calls through koffi, against real peers. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { ErrorCode, isSecpolicyError } from '../../src/index.js';
import {
  closeFd,
  localAddress,
  peerCred,
  peerGroups,
  peerSecurityLabel,
  remoteAddress,
  socketFd,
  socketHandle,
} from '../../src/native/index.js';
import { socketPeerPidfd } from '../../src/native/pidfd.js';
import { closeServer, needCommand, needNative, needRoot } from '../helpers/index.js';
import { connection, NOBODY } from '../helpers/connection.js';

test(
  'peerCred and peerGroups read a peer run as nobody with groups adm and cdrom',
  { skip: needRoot() || needCommand('setpriv') || needNative('peergroups') },
  async (t) => {
    const c = await connection({ as: { ...NOBODY, groups: [24, 4] } });
    t.after(() => c.close());
    const fd = socketFd(c.socket);
    assert.deepEqual(peerCred(fd), { pid: c.peer.pid, uid: 65534, gid: 65534 });
    assert.deepEqual(
      peerGroups(fd)!.sort((a, b) => a - b),
      [4, 24],
    );
  },
);

test(
  'peerGroups grows its buffer for a peer with many groups',
  { skip: needRoot() || needCommand('setpriv') || needNative('peergroups') },
  async (t) => {
    const many = Array.from({ length: 300 }, (_, i) => 1000 + i);
    const c = await connection({ as: { ...NOBODY, groups: many } });
    t.after(() => c.close());
    assert.deepEqual(
      peerGroups(socketFd(c.socket))!.sort((a, b) => a - b),
      many,
    );
  },
);

test('peerSecurityLabel: ENOPROTOOPT without an LSM is "no label", not an error', async (t) => {
  const c = await connection();
  t.after(() => c.close());
  const label = peerSecurityLabel(socketFd(c.socket));
  assert.ok(label === undefined || (typeof label === 'string' && label.length > 0));
});

test('socketPeerPidfd gives a pidfd on Linux 6.5+, which we own and close', async (t) => {
  const c = await connection();
  t.after(() => c.close());
  const pidfd = socketPeerPidfd(socketFd(c.socket));
  if (pidfd === 'unsupported') return t.skip('SO_PEERPIDFD needs Linux 6.5+');
  assert.equal(typeof pidfd, 'number', `the peer is alive: ${pidfd}`);
  if (typeof pidfd !== 'number') return;
  assert.ok(pidfd > 2);
  const { readFileSync } = await import('node:fs');
  assert.match(readFileSync(`/proc/self/fdinfo/${pidfd}`, 'utf8'), new RegExp(`Pid:\\s+${c.peer.pid}\\b`));
  closeFd(pidfd);
});

test('localAddress and remoteAddress: path, abstract and unnamed ends', async (t) => {
  const file = await connection();
  t.after(() => file.close());
  const fd = socketFd(file.socket);
  assert.deepEqual(localAddress(fd), { kind: 'path', path: file.path });
  assert.deepEqual(remoteAddress(fd), { kind: 'unnamed' });

  const abstract = await connection({ abstract: true });
  t.after(() => abstract.close());
  assert.deepEqual(localAddress(socketFd(abstract.socket)), { kind: 'abstract', path: `@${abstract.path.slice(1)}` });

  const client = net.connect(file.path);
  t.after(() => client.destroy());
  await once(client, 'connect');
  assert.deepEqual(remoteAddress(socketFd(client)), { kind: 'path', path: file.path });
});

test('socketFd refuses TCP, closed and foreign objects with stable codes', async (t) => {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const tcp = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  t.after(() => {
    tcp.destroy();
    return closeServer(server);
  });
  await once(tcp, 'connect');
  const code = (c: string) => (e: unknown) => isSecpolicyError(e) && e.code === c;
  assert.throws(() => socketFd(tcp), code(ErrorCode.NOT_UNIX_SOCKET));
  assert.throws(() => socketFd(new net.Socket()), code(ErrorCode.PEER_UNAVAILABLE));
  assert.throws(() => socketFd({} as net.Socket), code(ErrorCode.INVALID_ARG));
  // A bad fd reaches the kernel: EBADF means the peer cannot be read.
  assert.throws(() => peerCred(1 << 20), code(ErrorCode.PEER_UNAVAILABLE));
});

test('socketFd fails closed when Node keeps no _handle or its handle has no numeric fd', async (t) => {
  // A Node.js without these private fields cannot be run here: a real connected socket
  // stands in for one, with the field removed or replaced, as such a Node would have it.
  const c = await connection();
  t.after(() => c.close());
  const code = (want: string) => (e: unknown) => isSecpolicyError(e) && e.code === want && /Node\.js/.test(e.message);
  const real = socketFd(c.socket);
  assert.ok(real >= 0);
  const handle = socketHandle(c.socket);
  const withHandle = (value: unknown): net.Socket => {
    const s = Object.create(c.socket) as net.Socket;
    Object.defineProperty(s, '_handle', { value });
    return s;
  };
  // A Duplex stream with a socket's methods and no handle field anywhere on its prototypes.
  const noField = Object.create(Object.getPrototypeOf(net.Socket.prototype) as object) as net.Socket;
  assert.ok(!('_handle' in noField));
  assert.throws(() => socketFd(noField), code(ErrorCode.UNSUPPORTED_PLATFORM));
  assert.throws(() => socketFd(withHandle(42)), code(ErrorCode.UNSUPPORTED_PLATFORM));
  const fdless = Object.create(handle) as object;
  Object.defineProperty(fdless, 'fd', { value: undefined });
  assert.throws(() => socketFd(withHandle(fdless)), code(ErrorCode.UNSUPPORTED_PLATFORM));
  const stringFd = Object.create(handle) as object;
  Object.defineProperty(stringFd, 'fd', { value: String(real) });
  assert.throws(() => socketFd(withHandle(stringFd)), code(ErrorCode.UNSUPPORTED_PLATFORM));
  // The real socket is untouched.
  assert.equal(socketFd(c.socket), real);
});
