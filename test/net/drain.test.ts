import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { join } from 'node:path';
import { closeDaemon, Drain, registerDaemon, type Daemon } from '../../src/net/drain.js';
import { tempDir } from '../helpers/index.js';

/** A daemon over a real UNIX socket server whose connections are idle until they send a byte. */
async function daemonServer(dir: string): Promise<{ server: net.Server; daemon: Daemon & { events: string[] }; path: string }> {
  const open = new Drain<net.Socket & { idle(): boolean }>();
  const events: string[] = [];
  const server = net.createServer((socket) => {
    let busy = false;
    const tracked = Object.assign(socket, { idle: () => !busy });
    open.add(tracked);
    socket.on('data', () => {
      busy = true;
      socket.write('k'); // acknowledged: the client knows the server saw it busy
    });
    socket.on('error', () => {});
    socket.on('close', () => open.delete(tracked));
  });
  const daemon = {
    madeBy: 'test()',
    open,
    events,
    stopping: () => void events.push('stopping'),
    cut: () => void events.push('cut'),
    stopped: () => void events.push('stopped'),
  };
  registerDaemon(server, daemon);
  const path = join(dir, 's.sock');
  server.listen(path);
  await once(server, 'listening');
  return { server, daemon, path };
}

async function connected(path: string): Promise<net.Socket> {
  const c = net.connect(path);
  c.on('error', () => {});
  await once(c, 'connect');
  return c;
}

/** Sends a byte and waits for the server's acknowledgement. */
async function markBusy(c: net.Socket): Promise<void> {
  c.write('x');
  await once(c, 'data');
}

test('closing cuts idle connections at once, lets busy ones finish, then cuts them after the grace period', async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const { server, daemon, path } = await daemonServer(tmp.dir);
  const idle = await connected(path);
  const busy = await connected(path);
  await markBusy(busy);
  while (daemon.open.size < 2) await new Promise((r) => setTimeout(r, 5));
  const idleClosed = once(idle, 'close');
  const closing = closeDaemon(server, 'test()', { grace: 200 });
  await idleClosed;
  assert.equal(busy.destroyed, false, 'the busy connection is not cut before the grace period');
  assert.deepEqual(daemon.events, ['stopping']);
  await closing;
  assert.deepEqual(daemon.events, ['stopping', 'cut', 'stopped']);
  assert.equal(daemon.open.size, 0);
});

test('closing resolves as soon as the last connection ends by itself, without a cut', async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const { server, daemon, path } = await daemonServer(tmp.dir);
  const busy = await connected(path);
  await markBusy(busy);
  const closing = closeDaemon(server, 'test()', { grace: 60_000 });
  busy.end();
  await closing;
  assert.deepEqual(daemon.events, ['stopping', 'stopped']);
});

test('a server the daemon did not make, or a bad grace, is ERR_SECPOLICY_INVALID_ARG', async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const { server } = await daemonServer(tmp.dir);
  await assert.rejects(closeDaemon(net.createServer(), 'test()', {}), { code: 'ERR_SECPOLICY_INVALID_ARG', message: /test\(\)/ });
  await assert.rejects(closeDaemon(server, 'other()', {}), { code: 'ERR_SECPOLICY_INVALID_ARG', message: /other\(\)/ });
  await assert.rejects(closeDaemon(server, 'test()', { grace: -1 }), { code: 'ERR_SECPOLICY_INVALID_ARG' });
  await closeDaemon(server, 'test()', undefined);
});
