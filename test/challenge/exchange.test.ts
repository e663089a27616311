/**
 * The exchange over real UNIX sockets against peers in other processes (python3): order,
 * application bytes after the last frame, flow state, timeout, abort, closed and malformed
 * streams, failed verifications.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { ErrorCode, Policy, Result, isSecpolicyError } from '../../src/index.js';
import { encodeFrame, FrameType } from '../../src/challenge/index.js';
import { needCommand } from '../helpers/index.js';
import { PYTHON, acceptor, pythonClient } from './peers.js';

const skip = needCommand(PYTHON);
const shifted = (c: Uint8Array, r: Uint8Array) => r.length === c.length && c.every((b, i) => r[i] === ((b << 1) & 0xff));
const shiftPolicy = () => new Policy().challengeSend(() => randomBytes(10), shifted);
const EVENTS = ['readable', 'data', 'end', 'close', 'error'] as const;
const listeners = (s: net.Socket) => EVENTS.map((e) => s.listenerCount(e));
const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

function rejectsWith(code: string) {
  return (e: unknown) => isSecpolicyError(e) && e.code === code;
}

test('a response and the first application message in one write: the application gets exactly that message', { skip }, async (t) => {
  const { peer, socket } = await pythonClient(t, 'shift');
  const before = listeners(socket);
  const timers = timeouts();
  const decision = await shiftPolicy().apply(socket, { timeout: 5000 });
  assert.equal(decision.allowed, true, JSON.stringify(decision.failures));
  assert.deepEqual(listeners(socket), before, 'no listener is left behind');
  assert.equal(timeouts(), timers, 'the handshake timer is cleared');
  // A fresh socket is paused-not-flowing (null); so is this one once the tick settles.
  await new Promise((r) => setImmediate(r));
  assert.equal(socket.readableFlowing, null);
  let got = '';
  socket.on('data', (d) => (got += d));
  while (!got.includes('\n')) await once(socket, 'data');
  assert.equal(got, 'APP-MESSAGE\n');
  socket.end('bye\n');
  const out = await peer.output();
  assert.equal(out.stdout, 'bye\n');
});

test('application bytes reach a pipe() set up after the exchange', { skip }, async (t) => {
  const { socket } = await pythonClient(t, 'shift');
  assert.equal((await shiftPolicy().apply(socket)).allowed, true);
  const chunks: Buffer[] = [];
  const { Writable } = await import('node:stream');
  const sink = new Writable({ write: (c, _e, cb) => (chunks.push(c), cb()) });
  socket.pipe(sink);
  socket.end();
  await once(sink, 'finish');
  assert.equal(Buffer.concat(chunks).toString(), 'APP-MESSAGE\n');
});

test('a response that arrives one byte at a time is assembled, and the message after it is intact', { skip }, async (t) => {
  const { socket } = await pythonClient(t, 'trickle');
  const d = await shiftPolicy().apply(socket);
  assert.equal(d.allowed, true, JSON.stringify(d.failures));
  let got = '';
  socket.on('data', (c) => (got += c));
  while (got.length < 12) await once(socket, 'data');
  assert.equal(got, 'APP-MESSAGE\n');
});

test('a wrong answer sets Result.CHALLENGE', { skip }, async (t) => {
  const { socket } = await pythonClient(t, 'badshift');
  const d = await shiftPolicy().apply(socket);
  assert.equal(d.allowed, false);
  assert.equal(d.result, Result.CHALLENGE);
  assert.equal(d.failures[0]!.rule, 'challenge');
});

test('a verify() that throws counts as false', { skip }, async (t) => {
  const { socket } = await pythonClient(t, 'shift');
  const policy = new Policy().challengeSend(
    () => randomBytes(10),
    () => {
      throw new Error('boom');
    },
  );
  const d = await policy.apply(socket);
  assert.equal(d.result, Result.CHALLENGE);
  assert.match(d.failures[0]!.message, /verify\(\) threw/);
});

test('a create() that returns no bytes fails the verification without sending anything', { skip }, async (t) => {
  const { socket } = await pythonClient(t, 'silent');
  const policy = new Policy().challengeSend(
    () => new Uint8Array(0),
    () => true,
  );
  const d = await policy.apply(socket);
  assert.equal(d.result, Result.CHALLENGE);
  assert.match(d.failures[0]!.message, /create\(\) must return/);
});

test('a silent peer fails with ERR_SECPOLICY_TIMEOUT at the timeout, leaving no listener or timer', { skip }, async (t) => {
  const { socket } = await pythonClient(t, 'silent');
  const before = listeners(socket);
  const timers = timeouts();
  await assert.rejects(shiftPolicy().apply(socket, { timeout: 150 }), rejectsWith(ErrorCode.TIMEOUT));
  assert.deepEqual(listeners(socket), before);
  assert.equal(timeouts(), timers);
});

test('a user callback that never settles is cut off by the same timeout', { skip }, async (t) => {
  const { socket } = await pythonClient(t, 'shift');
  const policy = new Policy().challengeSend(
    () => randomBytes(10),
    () => new Promise<boolean>(() => {}),
  );
  await assert.rejects(policy.apply(socket, { timeout: 150 }), rejectsWith(ErrorCode.TIMEOUT));
});

test('an abort signal stops the exchange with ERR_SECPOLICY_ABORTED', { skip }, async (t) => {
  const { socket } = await pythonClient(t, 'silent');
  const ac = new AbortController();
  const pending = shiftPolicy().apply(socket, { timeout: 5000, signal: ac.signal });
  setImmediate(() => ac.abort(new Error('shutting down')));
  await assert.rejects(pending, rejectsWith(ErrorCode.ABORTED));
  await assert.rejects(shiftPolicy().apply(socket, { signal: AbortSignal.abort() }), rejectsWith(ErrorCode.ABORTED));
});

const header = (type: number, version: bigint, size: bigint) => {
  const h = Buffer.alloc(24);
  h.writeUInt32LE(type, 0);
  h.writeBigUInt64LE(version, 8);
  h.writeBigUInt64LE(size, 16);
  return h.toString('hex');
};

for (const [name, bytes] of [
  ['a stream that ends inside a frame', header(1, 1n, 10n) + 'aabb'],
  ['a header announcing 2^63 bytes', header(1, 1n, 2n ** 63n)],
  ['a header above the cap', header(1, 1n, 65537n)],
  ['an unknown version', header(1, 2n, 10n) + '00'.repeat(10)],
  ['a REQUEST where a RESPONSE is due', header(0, 1n, 10n) + '00'.repeat(10)],
  ['a payload_size of 0', header(1, 1n, 0n)],
] as const) {
  test(`${name} rejects with ERR_SECPOLICY_PROTOCOL`, { skip }, async (t) => {
    const { peer, socket } = await pythonClient(t, 'raw', bytes);
    // A peer that ends its stream after its bytes makes "ends inside a frame" observable.
    if (name.includes('ends inside')) setTimeout(() => peer.kill('SIGKILL'), 50);
    await assert.rejects(shiftPolicy().apply(socket, { timeout: 5000 }), rejectsWith(ErrorCode.PROTOCOL));
  });
}

test('maxPayload is configurable per apply and checked from the header', { skip }, async (t) => {
  const { socket } = await pythonClient(t, 'shift');
  await assert.rejects(
    shiftPolicy().apply(socket, { maxPayload: 9 }),
    (e: unknown) => isSecpolicyError(e) && e.code === ErrorCode.PROTOCOL && /exceeds the limit of 9/.test(e.message),
  );
  await assert.rejects(shiftPolicy().apply(socket, { maxPayload: 0 }), rejectsWith(ErrorCode.INVALID_ARG));
});

test('a socket closed during the exchange rejects with ERR_SECPOLICY_PROTOCOL', { skip }, async (t) => {
  const { socket } = await pythonClient(t, 'silent');
  const pending = shiftPolicy().apply(socket);
  socket.destroy();
  await assert.rejects(pending, rejectsWith(ErrorCode.PROTOCOL));
});

test('the peer closing its end during the exchange rejects with ERR_SECPOLICY_PROTOCOL', { skip }, async (t) => {
  const { peer, socket } = await pythonClient(t, 'silent');
  const pending = shiftPolicy().apply(socket, { timeout: 5000 });
  setTimeout(() => peer.kill('SIGKILL'), 50);
  await assert.rejects(pending, rejectsWith(ErrorCode.PROTOCOL));
});

test('a socket with an encoding set is refused with ERR_SECPOLICY_INVALID_ARG, not misread', { skip }, async (t) => {
  const { socket } = await pythonClient(t, 'silent');
  socket.setEncoding('utf8');
  await assert.rejects(shiftPolicy().apply(socket), rejectsWith(ErrorCode.INVALID_ARG));
});

test('applySync refuses challenge policies with ERR_SECPOLICY_ASYNC_RULE', { skip }, async (t) => {
  const { socket } = await pythonClient(t, 'silent');
  for (const policy of [
    shiftPolicy(),
    new Policy().challengeReceive((c) => c),
    new Policy().sharedSecret(randomBytes(32)),
    new Policy().sharedSecret({ keyFile: '/nonexistent' }),
  ]) {
    assert.throws(() => policy.applySync(socket), rejectsWith(ErrorCode.ASYNC_RULE));
  }
});

test('mutual exchange between two sockets of this process does not deadlock, and both orders agree', async (t) => {
  const a = await acceptor(t);
  const client = net.connect(a.path);
  t.after(() => client.destroy());
  const server = await a.next();
  t.after(() => server.destroy());
  const seen: string[] = [];
  const side = (name: string) =>
    new Policy()
      .challengeSend(
        () => Buffer.from(`${name}-challenge`),
        (c, r) => (seen.push(`${name} verifies`), Buffer.from(r).toString() === `${Buffer.from(c).toString()}!`),
      )
      .challengeReceive((c) => (seen.push(`${name} solves`), Buffer.from(`${Buffer.from(c).toString()}!`)));
  const [ds, dc] = await Promise.all([side('server').apply(server), side('client').apply(client)]);
  assert.equal(ds.allowed, true);
  assert.equal(dc.allowed, true);
  assert.deepEqual(
    seen.filter((s) => s.startsWith('server')),
    ['server solves', 'server verifies'],
  );
  // Application data still flows both ways afterwards.
  client.write('ping');
  const [d] = await once(server, 'data');
  assert.equal(String(d), 'ping');
});

test('frames written by encodeFrame in one burst are split between exchange and application exactly', async (t) => {
  const a = await acceptor(t);
  const client = net.connect(a.path);
  t.after(() => client.destroy());
  const server = await a.next();
  t.after(() => server.destroy());
  // The peer's REQUEST, then application bytes, arrive before we even start.
  // The write callback runs once the kernel holds the bytes in the server end's queue.
  await new Promise((r) => client.write(Buffer.concat([encodeFrame(FrameType.REQUEST, Buffer.from('abc')), Buffer.from('after')]), r));
  const d = await new Policy().challengeReceive((c) => c).apply(server);
  assert.equal(d.allowed, true);
  const [resp] = await once(client, 'data');
  assert.deepEqual(resp, encodeFrame(FrameType.RESPONSE, Buffer.from('abc')));
  assert.equal(server.read(5)?.toString() ?? String((await once(server, 'data'))[0]), 'after');
});
