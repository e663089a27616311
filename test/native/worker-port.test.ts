/**
 * The one way the library runs worker threads: request/response by id over a MessagePort,
 * every waiting request failed with ERR_SECPOLICY_WORKER when the worker dies, a new worker
 * on the next use, and none at all where the worker file cannot start.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as net from 'node:net';
import { test } from 'node:test';
import { connectUnix, startRelay } from '../../src/native/index.js';
import { WorkerPort } from '../../src/worker-port.js';
import { tempDir } from '../helpers/index.js';

type Req = { op: 'echo' | 'throw' | 'exit'; value?: string };
type Res = { value?: string; threadId: number };

const url = new URL('./worker-port-worker.js', import.meta.url);

test('answers each request by its id, and fails one whose handler throws', async () => {
  const port = new WorkerPort<Req, Res>({ url, name: 'the test worker' });
  const answers = await Promise.all(['a', 'b', 'c'].map((value) => port.request({ op: 'echo', value })));
  assert.deepEqual(
    answers.map((a) => a.value),
    ['a', 'b', 'c'],
  );
  await assert.rejects(port.request({ op: 'throw', value: 'x' }), {
    code: 'ERR_SECPOLICY_WORKER',
    message: /the test worker: asked to throw x/,
  });
  assert.equal(port.size, 0);
  await port.stop();
});

test('a worker that dies fails what waits on it with ERR_SECPOLICY_WORKER, and the next use starts a new one', async () => {
  const port = new WorkerPort<Req, Res>({ url, name: 'the test worker' });
  const first = await port.request({ op: 'echo', value: 'before' });
  // Asked in the same turn: both wait on the worker that exits.
  const dying = port.request({ op: 'exit' });
  const waiting = port.request({ op: 'echo', value: 'queued behind the exit' });
  for (const p of [dying, waiting])
    await assert.rejects(p, { code: 'ERR_SECPOLICY_WORKER', message: /the test worker stopped: exit code 3/ });
  assert.equal(port.available, true);
  const after = await port.request({ op: 'echo', value: 'after' });
  assert.equal(after.value, 'after');
  assert.notEqual(after.threadId, first.threadId, 'a new worker thread answered');
  await port.stop();
});

test('with restart off, a dead worker stays dead and says so', async () => {
  const port = new WorkerPort<Req, Res>({ url, name: 'the test worker', restart: false });
  await assert.rejects(port.request({ op: 'exit' }), { code: 'ERR_SECPOLICY_WORKER' });
  assert.equal(port.available, false);
  assert.throws(() => port.call({ op: 'echo' }), { code: 'ERR_SECPOLICY_WORKER', message: /stopped: exit code 3/ });
});

test('a worker file that cannot start is unavailable, with the reason, and is not tried again', async () => {
  const port = new WorkerPort<Req, Res>({ url: new URL('./no-such-worker.js', import.meta.url), name: 'the missing worker' });
  await assert.rejects(port.start(), { code: 'ERR_SECPOLICY_UNSUPPORTED_PLATFORM', message: /the missing worker cannot run here/ });
  assert.equal(port.available, false);
  await assert.rejects(port.request({ op: 'echo' }), { code: 'ERR_SECPOLICY_UNSUPPORTED_PLATFORM' });
});

test('an idle worker does not keep the process alive', async () => {
  // The port is left running and idle: if it held the event loop, this test file would never end.
  const port = new WorkerPort<Req, Res>({ url, name: 'the test worker' });
  assert.equal((await port.request({ op: 'echo', value: 'idle after this' })).value, 'idle after this');
  assert.equal(port.size, 0);
});

test('a relay stopped with a pair open closes the pair without an error', async (t) => {
  let relay;
  try {
    relay = await startRelay();
  } catch (e) {
    return t.skip(`no splice(2) relay here: ${(e as Error).message}`);
  }
  const dir = tempDir();
  t.after(() => dir.cleanup());
  const path = dir.path('s.sock');
  const accepted: net.Socket[] = [];
  const server = net.createServer((s) => accepted.push(s)).listen(path);
  await once(server, 'listening');
  t.after(() => {
    for (const s of accepted) s.destroy();
    server.close();
  });
  const a = connectUnix(path);
  const b = connectUnix(path);
  assert.ok('fd' in a && 'fd' in b);
  const closed = new Promise<string | undefined>((resolve) => relay.join(a, b, resolve));
  assert.equal(relay.size, 1);
  await relay.stop();
  assert.equal(await closed, undefined, 'closed by the stop, not failed by the worker ending');
  assert.equal(relay.size, 0);
});
