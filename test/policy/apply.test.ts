/**
 * apply() errors when no verification is possible (TCP, closed socket, not a socket at
 * all, a challenge in applySync), and verification over an unnamed socketpair.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, openSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import { ErrorCode, Policy, Result, isSecpolicyError } from '../../src/index.js';
import { closeServer, needCommand, needNative, run, tempDir } from '../helpers/index.js';
import { connection } from '../helpers/connection.js';

const withCode = (code: string) => (e: unknown) => isSecpolicyError(e) && e.code === code;

test('apply() on a TCP socket: ERR_SECPOLICY_NOT_UNIX_SOCKET, on both ends', async (t) => {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection').then(([s]) => s as net.Socket);
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  t.after(() => client.destroy());
  await once(client, 'connect');
  const serverSide = await accepted;
  t.after(() => {
    serverSide.destroy();
    return closeServer(server);
  });
  for (const s of [client, serverSide]) {
    await assert.rejects(new Policy().uid(0).apply(s), withCode(ErrorCode.NOT_UNIX_SOCKET));
    assert.throws(() => new Policy().applySync(s), withCode(ErrorCode.NOT_UNIX_SOCKET));
  }
});

test('apply() on a destroyed socket: ERR_SECPOLICY_PEER_UNAVAILABLE', async (t) => {
  const c = await connection();
  t.after(() => c.close());
  c.socket.destroy();
  await assert.rejects(new Policy().uid(0).apply(c.socket), withCode(ErrorCode.PEER_UNAVAILABLE));
  assert.throws(() => new Policy().applySync(c.socket), withCode(ErrorCode.PEER_UNAVAILABLE));
  // A socket that never had a handle, too.
  await assert.rejects(new Policy().apply(new net.Socket()), withCode(ErrorCode.PEER_UNAVAILABLE));
});

test('apply() on a FIFO wrapped in a net.Socket: ERR_SECPOLICY_NOT_UNIX_SOCKET', { skip: needCommand('mkfifo') }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.cleanup());
  const fifo = tmp.path('fifo');
  assert.equal((await run('mkfifo', [fifo]).output()).code, 0);
  const socket = new net.Socket({ fd: openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK), readable: false });
  t.after(() => socket.destroy());
  await assert.rejects(
    new Policy().uid(0).apply(socket),
    (e: unknown) => withCode(ErrorCode.NOT_UNIX_SOCKET)(e) && /ENOTSOCK/.test((e as Error).message),
  );
});

test('applySync() with a challenge: ERR_SECPOLICY_ASYNC_RULE', async (t) => {
  const c = await connection();
  t.after(() => c.close());
  const p = new Policy().uid(0).challengeSend(
    () => new Uint8Array(16),
    () => true,
  );
  assert.throws(() => p.applySync(c.socket), withCode(ErrorCode.ASYNC_RULE));
});

test(
  "a child's stdio socketpair verifies as an unnamed peer: ids and program pass, perms never does",
  { skip: needNative('program') },
  async (t) => {
    const child = run(process.execPath, ['-e', 'process.stdin.resume()']);
    t.after(async () => {
      child.kill('SIGKILL');
      await child.output();
    });
    await once(child, 'spawn');
    // libuv gives a child its stdio pipes as AF_UNIX socketpairs.
    const d = await new Policy()
      .uid(process.getuid!())
      .program(process.execPath)
      .perms(0o777)
      .apply(child.stdin as net.Socket);
    assert.equal(d.result, Result.PERMS);
    // The kernel stamps a socketpair with the credentials of the process that made it: us, not the child.
    assert.equal(d.peer.pid, process.pid);
    assert.match(d.failures[0]!.message, /unnamed/);
    assert.equal(d.peer.socketPath, undefined);
  },
);
