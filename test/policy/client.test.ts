/**
 * Client-side verification: the policy applied on our connected socket checks the server
 * process (socat listening as daemon), the connected socket file's mode, and its program.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chownSync, existsSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Policy, Result } from '../../src/index.js';
import { closeServer, needCommand, needRoot, run, tempDir } from '../helpers/index.js';
import { DAEMON } from '../helpers/connection.js';

test('a client verifies a server run by socat as daemon', { skip: needRoot() || needCommand('socat', 'setpriv') }, async (t) => {
  const tmp = tempDir('secpolicy-client-');
  t.after(() => tmp.cleanup());
  chownSync(tmp.dir, DAEMON.uid, DAEMON.gid);
  const path = tmp.path('server.sock');
  const server = run('socat', ['-u', `UNIX-LISTEN:${path},mode=640`, 'OPEN:/dev/null'], { as: DAEMON });
  let socket: net.Socket | undefined;
  // One hook, in order: our end first, so socat's connection ends and its pipes close.
  t.after(async () => {
    socket?.destroy();
    server.kill('SIGKILL');
    await server.output();
  });
  socket = await connectWhenListening(path, () => server.exitCode === null);
  assert.ok(existsSync(path));

  const pass = await new Policy().uid(1).gid(1).user('daemon').group('daemon').perms(0o640).program('/usr/bin/socat').apply(socket);
  assert.equal(pass.allowed, true, JSON.stringify(pass.failures));
  assert.equal(pass.peer.side, 'client');
  assert.equal(pass.peer.pid, server.pid, "the listener's credentials, as of listen()");
  assert.equal(pass.peer.socketPath, path);

  const fail = await new Policy().uid(0).perms(0o660).program(process.execPath).apply(socket);
  assert.equal(fail.result, Result.UID | Result.PERMS | Result.PROGRAM);
  assert.deepEqual(
    fail.failures.map((f) => f.actual),
    [1, 0o640, '/usr/bin/socat'],
  );
  assert.equal(new Policy().uid(1).perms(0o640).applySync(socket).allowed, true);
});

/**
 * Connects once the server listens: socat creates the file at bind(), a moment before
 * listen(), so a refused or missing path is retried while the server runs.
 */
async function connectWhenListening(path: string, running: () => boolean): Promise<net.Socket> {
  for (let i = 0; i < 400 && running(); i++) {
    const socket = net.connect(path);
    // once() rejects with the socket's 'error': a refused connection arrives as the rejection.
    const outcome = await once(socket, 'connect').then(
      () => null,
      (e: NodeJS.ErrnoException) => e,
    );
    if (outcome === null) {
      // socat may reset the connection when killed; that is not what this test is about.
      return socket.on('error', () => {});
    }
    socket.destroy();
    if (outcome.code !== 'ECONNREFUSED' && outcome.code !== 'ENOENT') throw outcome;
    await sleep(25);
  }
  throw new Error('socat did not listen');
}

test('a client verifies the socket path it connected to, even when the caller names it', async (t) => {
  const tmp = tempDir('secpolicy-client-');
  t.after(() => tmp.cleanup());
  const path = tmp.path('s.sock');
  const server = net.createServer((s) => s.on('error', () => {}));
  server.listen(path);
  await once(server, 'listening');
  const socket = net.connect(path).on('error', () => {});
  t.after(() => {
    socket.destroy();
    return closeServer(server);
  });
  await once(socket, 'connect');
  const d = await new Policy().uid(process.getuid!()).program(process.execPath).apply(socket, { socketPath: path });
  assert.equal(d.allowed, true);
  assert.equal(d.peer.pid, process.pid, 'we are the server here');
});
