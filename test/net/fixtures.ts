/** Fixtures of the net tests: servers on fresh socket files, torn down after each test. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chmodSync } from 'node:fs';
import type net from 'node:net';
import type { TestContext } from 'node:test';
import { isSecpolicyError } from '../../src/index.js';
import { closeServer, run, tempDir, type RunAs } from '../helpers/index.js';

export const DAEMON: RunAs = { uid: 1, gid: 1 };
export const NOBODY: RunAs = { uid: 65534, gid: 65534 };

/** Listens on a fresh socket file any user may connect to; closed and removed after the test. */
export async function serve(t: TestContext, server: net.Server): Promise<string> {
  const tmp = tempDir('secpolicy-net-');
  const path = tmp.path('s.sock');
  // A connection nobody reads never sees its EOF: destroy what is left so that close() returns.
  const open = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  });
  t.after(async () => {
    for (const socket of open) socket.destroy();
    await closeServer(server);
    tmp.cleanup();
  });
  server.listen(path);
  await once(server, 'listening');
  chmodSync(path, 0o777);
  return path;
}

/** Collects the events a server emits, for assertions after the fact. */
export function record<T extends unknown[]>(emitter: NodeJS.EventEmitter, event: string): T[] {
  const seen: T[] = [];
  emitter.on(event, (...args: unknown[]) => seen.push(args as T));
  return seen;
}

/** Asserts that a promise rejects with a SecpolicyError of this code (and message). */
export function rejectsWith(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  return assert.rejects(promise, (e: unknown) => {
    assert.ok(isSecpolicyError(e), `not a SecpolicyError: ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

/**
 * A node peer process that connects, prints what it receives, and stays until the server
 * closes the connection (it then exits 0) or its stdin ends (it then hangs up). Killed
 * after the test.
 */
export function holdingPeer(t: TestContext, path: string, as?: RunAs) {
  const script = `const s = require('net').connect(process.argv[1]);
    s.on('error', (e) => { console.error(e.code); process.exit(3); });
    s.on('data', (d) => process.stdout.write(d));
    s.on('close', () => process.exit(0));
    process.stdin.on('end', () => s.end()).resume();`;
  const child = run(process.execPath, ['-e', script, path], as ? { as } : {});
  t.after(() => {
    child.kill();
  });
  return child;
}
