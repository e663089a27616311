import assert from 'node:assert/strict';
import { once } from 'node:events';
import type net from 'node:net';
import { test } from 'node:test';
import { ErrorCode, Policy, Result, connect, createServer, isSecpolicyError, peerOf, type Decision } from '../../src/index.js';
import { needCommand, needRoot, run } from '../helpers/index.js';
import { DAEMON, record, rejectsWith, serve } from './fixtures.js';

const KEY = new Uint8Array(32).fill(0x5a);

/** A createServer with uid + shared-secret policy; its listener greets the verified peer. */
async function secretServer(t: import('node:test').TestContext, uids: number[]) {
  const served: number[] = [];
  const server = createServer({ policy: new Policy().uid(uids).sharedSecret(KEY), handshakeTimeout: 5000 }, (socket, peer) => {
    served.push(peer.uid);
    socket.end(`welcome ${peer.uid}`);
  });
  const denied = record<[Decision | Error, net.Socket]>(server, 'denied');
  const path = await serve(t, server);
  return { path, served, denied };
}

const readAll = async (socket: net.Socket) => {
  let text = '';
  for await (const chunk of socket as AsyncIterable<Buffer>) text += chunk.toString();
  return text;
};

test('handshake: a shared-secret server and a connect() client verify each other', { timeout: 60_000 }, async (t) => {
  const { path, served, denied } = await secretServer(t, [process.getuid!()]);
  const socket = await connect({ path, policy: new Policy().uid(process.getuid!()).sharedSecret(KEY) });
  assert.equal(peerOf(socket)!.pid, process.pid);
  assert.equal(await readAll(socket), `welcome ${process.getuid!()}`);
  assert.deepEqual(served, [process.getuid!()]);

  // A client with another key: both ends refuse, and the server's listener never runs.
  await rejectsWith(connect({ path, policy: new Policy().sharedSecret(new Uint8Array(32).fill(1)) }), ErrorCode.DENIED);
  assert.deepEqual(served, [process.getuid!()]);
  assert.equal(denied.length, 1);
  assert.equal((denied[0]![0] as Decision).result, Result.CHALLENGE);
});

test(
  'handshake: a peer that speaks HTTP to a challenge server is refused with a protocol error',
  { timeout: 60_000, skip: needCommand('socat') },
  async (t) => {
    const { path, served, denied } = await secretServer(t, [process.getuid!()]);
    const socat = run('socat', ['-t', '5', '-', `UNIX-CONNECT:${path}`]);
    socat.stdin!.end('GET / HTTP/1.0\r\nHost: localhost\r\n\r\n');
    const out = await socat.output();
    assert.equal(out.stdout.includes('welcome'), false);
    assert.deepEqual(served, []);
    assert.equal(denied.length, 1);
    const reason = denied[0]![0];
    assert.ok(isSecpolicyError(reason), 'an error, not a decision');
    assert.equal(reason.code, ErrorCode.PROTOCOL);
  },
);

test(
  'handshake: a peer failing the identity rules is denied without a challenge being sent',
  { timeout: 60_000, skip: needRoot() || needCommand('socat') },
  async (t) => {
    const { path, denied } = await secretServer(t, [0]);
    const out = await run('socat', ['-u', `UNIX-CONNECT:${path}`, '-'], { as: DAEMON }).output();
    assert.equal(out.stdout, '', 'not even a challenge frame reaches a peer of the wrong uid');
    assert.equal(denied.length, 1);
    assert.equal((denied[0]![0] as Decision).result, Result.UID);
  },
);

test('handshake: createServer and connect pass maxPayload to the exchange', { timeout: 60_000 }, async (t) => {
  // The server's challenge asks for a 64-byte answer; a cap of 16 bytes refuses it from the header.
  const policy = new Policy().challengeSend(
    () => new Uint8Array(10).fill(7),
    (_challenge, response) => response.length === 64,
  );
  const server = createServer({ policy, maxPayload: 16 }, (socket) => socket.end('served'));
  const denied = record<[Decision | Error, net.Socket]>(server, 'denied');
  const path = await serve(t, server);
  const answer = new Policy().challengeReceive(() => new Uint8Array(64));
  const socket = await connect({ path, policy: answer }).catch((e: unknown) => e);
  if (!isSecpolicyError(socket)) (socket as net.Socket).destroy();
  // The client may see its end fail before the server has emitted 'denied'.
  if (denied.length === 0) await once(server, 'denied');
  assert.equal(denied.length, 1);
  const reason = denied[0]![0];
  assert.ok(isSecpolicyError(reason), 'an error, not a decision');
  assert.equal(reason.code, ErrorCode.PROTOCOL);
  assert.match(reason.message, /exceeds the limit of 16/);

  // And a client's cap applies to the server's challenge: 10 bytes do not fit in 4.
  await rejectsWith(connect({ path, policy: answer, maxPayload: 4 }), ErrorCode.PROTOCOL, /exceeds the limit of 4/);
  // A bad cap is refused up front, naming the option.
  assert.throws(
    () => createServer({ policy, maxPayload: -1 }),
    (e: unknown) => isSecpolicyError(e) && e.code === ErrorCode.INVALID_ARG && /maxPayload/.test(e.message),
  );
});
