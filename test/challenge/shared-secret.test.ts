/**
 * The shared-secret mechanism against peers in other processes: a python3 implementation
 * written from docs/protocol.md, and the secret-client example (this package in a child node).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { ErrorCode, Policy, Result, isSecpolicyError } from '../../src/index.js';
import { needCommand, run } from '../helpers/index.js';
import { PYTHON, acceptor, pythonClient, pythonPeer, reap } from './peers.js';

const skip = needCommand(PYTHON);
const SECRET_CLIENT = fileURLToPath(new URL('../../examples/secret-client.js', import.meta.url));

test(
  'a python peer with the same key: both sides verify, and its message after the RESPONSE reaches the application',
  { skip },
  async (t) => {
    const key = randomBytes(32);
    const { peer, socket } = await pythonClient(t, 'secret', key.toString('hex'));
    const d = await new Policy().sharedSecret(key).apply(socket);
    assert.equal(d.allowed, true, JSON.stringify(d.failures));
    let got = '';
    socket.on('data', (c) => (got += c));
    while (got.length < 12) await once(socket, 'data');
    assert.equal(got, 'APP-MESSAGE\n');
    socket.end();
    assert.match((await peer.output()).stdout, /^verified\n/);
  },
);

test('twenty concurrent handshakes on one server each verify, and each application keeps its own bytes', { skip }, async (t) => {
  const a = await acceptor(t);
  const key = randomBytes(32);
  const peers = Array.from({ length: 20 }, () => pythonPeer('client', a.path, 'secret', key.toString('hex')));
  t.after(() => Promise.all(peers.map(reap)));
  const policy = new Policy().sharedSecret(key);
  const results = await Promise.all(
    peers.map(async () => {
      const socket = await a.next();
      const d = await policy.apply(socket);
      let got = '';
      socket.on('data', (c) => (got += c));
      while (got.length < 12) await once(socket, 'data');
      socket.end();
      return d.allowed && got === 'APP-MESSAGE\n';
    }),
  );
  assert.deepEqual(
    results,
    peers.map(() => true),
  );
  for (const p of peers) assert.match((await p.output()).stdout, /^verified\n/);
});

test(
  'a wrong key yields Result.CHALLENGE on our side and a refusal on the peer side; the key is not in the decision',
  { skip },
  async (t) => {
    const key = randomBytes(32);
    const { peer, socket } = await pythonClient(t, 'secret', randomBytes(32).toString('hex'));
    const d = await new Policy().sharedSecret(key).apply(socket);
    assert.equal(d.allowed, false);
    assert.equal(d.result, Result.CHALLENGE);
    const text = JSON.stringify(d.failures);
    assert.ok(!text.includes(key.toString('hex')) && !text.includes(key.toString('base64')));
    socket.end();
    assert.match((await peer.output()).stdout, /^refused\n/);
  },
);

test('a peer that reflects our nonce is refused without an answer', { skip }, async (t) => {
  const { peer, socket } = await pythonClient(t, 'reflect');
  const d = await new Policy().sharedSecret(randomBytes(32)).apply(socket, { timeout: 5000 });
  assert.equal(d.result, Result.CHALLENGE);
  assert.match(d.failures[0]!.message, /reflection/);
  socket.end();
  // The peer saw our REQUEST and nothing else: no RESPONSE it could replay.
  assert.equal((await peer.output()).stdout, '');
});

test('a nonce of the wrong size is refused', { skip }, async (t) => {
  const short = Buffer.alloc(24);
  short.writeBigUInt64LE(2n, 8);
  short.writeBigUInt64LE(16n, 16);
  const { socket } = await pythonClient(t, 'raw', Buffer.concat([short, randomBytes(16)]).toString('hex'));
  const d = await new Policy().sharedSecret(randomBytes(32)).apply(socket);
  assert.equal(d.result, Result.CHALLENGE);
  assert.match(d.failures[0]!.message, /32 bytes/);
});

test('roles are bound into the answer: two sides that both claim to be the server fail', async (t) => {
  const a = await acceptor(t);
  const client = net.connect(a.path);
  t.after(() => client.destroy());
  const server = await a.next();
  const policy = new Policy().sharedSecret(randomBytes(32));
  const [ds, dc] = await Promise.all([policy.apply(server), policy.apply(client, { side: 'server' })]);
  assert.equal(ds.result, Result.CHALLENGE);
  assert.equal(dc.result, Result.CHALLENGE);
  // With the roles right, the same policy passes on both ends.
  const client2 = net.connect(a.path);
  t.after(() => client2.destroy());
  const server2 = await a.next();
  const [s2, c2] = await Promise.all([policy.apply(server2), policy.apply(client2)]);
  assert.equal(s2.allowed && c2.allowed, true);
});

test('the secret-client example (a child node) and a key-file server: same key passes, another key fails both ways', async (t) => {
  const a = await acceptor(t);
  const keyFile = a.tmp.path('key');
  writeFileSync(keyFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  const otherKey = a.tmp.path('other');
  writeFileSync(otherKey, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  const policy = new Policy().sharedSecret({ keyFile });

  const good = run(process.execPath, [SECRET_CLIENT, a.path, keyFile, 'ping']);
  t.after(() => reap(good));
  const s1 = await a.next();
  assert.equal((await policy.apply(s1)).allowed, true);
  s1.pipe(s1);
  const out = await good.output();
  assert.equal(out.code, 0, out.stderr);
  assert.equal(out.stdout, 'ping\n');

  const bad = run(process.execPath, [SECRET_CLIENT, a.path, otherKey, 'ping']);
  t.after(() => reap(bad));
  const s2 = await a.next();
  const d = await policy.apply(s2);
  assert.equal(d.result, Result.CHALLENGE);
  s2.destroy();
  const badOut = await bad.output();
  assert.equal(badOut.code, 1);
  assert.match(badOut.stderr, /ERR_SECPOLICY_DENIED/);
});

test('an unsafe key file rejects apply() with ERR_SECPOLICY_KEY_FILE before anything is sent', { skip }, async (t) => {
  const { server, peer, socket } = await pythonClient(t, 'silent');
  const keyFile = server.tmp.path('loose');
  writeFileSync(keyFile, randomBytes(32).toString('hex'), { mode: 0o644 });
  await assert.rejects(
    new Policy().sharedSecret({ keyFile }).apply(socket),
    (e: unknown) => isSecpolicyError(e) && e.code === ErrorCode.KEY_FILE,
  );
  socket.end();
  assert.equal((await peer.output()).stdout, '');
});

test('the test vector of docs/protocol.md: both RESPONSE payloads and the frame headers', async () => {
  const { secretResponse } = await import('../../src/challenge/index.js');
  const { encodeFrame, FrameType } = await import('../../src/challenge/index.js');
  const key = Buffer.from('0123456789abcdef0123456789abcdef');
  const binding = { client: 1234567, server: 1234568 };
  const clientNonce = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
  const serverNonce = Buffer.from(Array.from({ length: 32 }, (_, i) => 0x20 + i));
  assert.equal(
    secretResponse(key, 'client', binding, serverNonce, clientNonce).toString('hex'),
    'a52c5e4c0e0e96ac6e2530e2a137ba5bdd35f2241947d5782470ba0aca35fb3f',
  );
  assert.equal(
    secretResponse(key, 'server', binding, clientNonce, serverNonce).toString('hex'),
    '007beb8f2d75ba914eafda3ec51d7e4c272675af1ef8e4dc7b482fb7c25b6525',
  );
  assert.equal(
    encodeFrame(FrameType.REQUEST, clientNonce, 2).subarray(0, 24).toString('hex'),
    '000000000000000002000000000000002000000000000000',
  );
  // The same inputs with the inodes swapped (another connection) give another answer.
  assert.notEqual(
    secretResponse(key, 'client', { client: 1234568, server: 1234567 }, serverNonce, clientNonce).toString('hex'),
    'a52c5e4c0e0e96ac6e2530e2a137ba5bdd35f2241947d5782470ba0aca35fb3f',
  );
});
