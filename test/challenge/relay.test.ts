/**
 * The shared secret against a relay: a squatter that holds no key sits at the path the
 * client dials, connects to the real server, and forwards every byte both ways. With
 * proofs bound to the connection (version 2) the relayed proofs fail on both ends. Also:
 * a version-1 peer is refused with a clear error, python3 peers of version 2 verify against
 * the TypeScript server and client, and peers in another network namespace.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chownSync, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { test } from 'node:test';
import { ErrorCode, Policy, Result, connect, createServer, isSecpolicyError, type Decision, type SecpolicyError } from '../../src/index.js';
import { needCommand, needRoot, run, sharedDist, tempDir } from '../helpers/index.js';
import { PEER_PY, PYTHON, listening, pythonClient, pythonPeer, reap } from './peers.js';

const skip = needCommand(PYTHON);

/** A relay squatter: listens at argv[1], dials argv[2] per client and copies bytes both ways; before each forward it prints "up N" / "down N", the bytes of that direction so far. */
const RELAY_PY = String.raw`
import os, socket, sys, threading
listen_path, target = sys.argv[1], sys.argv[2]
l = socket.socket(socket.AF_UNIX); l.bind(listen_path); os.chmod(listen_path, 0o777); l.listen(8)
print('listening', flush=True)
def pump(a, b, name):
    n = 0
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            n += len(d); print(name, n, flush=True)
            b.sendall(d)
    except OSError:
        pass
    try: b.shutdown(socket.SHUT_WR)
    except OSError: pass
while True:
    c, _ = l.accept()
    u = socket.socket(socket.AF_UNIX); u.connect(target)
    threading.Thread(target=pump, args=(c, u, 'up'), daemon=True).start()
    threading.Thread(target=pump, args=(u, c, 'down'), daemon=True).start()
`;

/** A createServer with a shared-secret policy on a fresh path, recording what it admits and denies. */
async function secretServer(t: import('node:test').TestContext, key: Uint8Array) {
  const dir = tempDir('secpolicy-relay-');
  const path = dir.path('real.sock');
  const admitted: net.Socket[] = [];
  const denied: Array<Decision | SecpolicyError> = [];
  let onDenied: (() => void) | undefined;
  const server = createServer({ policy: new Policy().sharedSecret(key) }, (socket) => {
    admitted.push(socket);
    socket.end('WELCOME\n');
  });
  server.on('denied', (why: Decision | SecpolicyError) => {
    denied.push(why);
    onDenied?.();
  });
  server.listen(path);
  await once(server, 'listening');
  t.after(() => {
    for (const s of admitted) s.destroy();
    server.close();
    dir.cleanup();
  });
  const nextDenial = () => (denied.length ? Promise.resolve() : new Promise<void>((r) => (onDenied = r)));
  return { path, dir, admitted, denied, nextDenial };
}

test('a relay squatter that forwards nonces and proofs between a client and the real server is refused by both', { skip }, async (t) => {
  const key = randomBytes(32);
  const real = await secretServer(t, key);
  const squat = real.dir.path('squat.sock');
  const relay = run(PYTHON, ['-c', RELAY_PY, squat, real.path]);
  t.after(() => reap(relay));
  await listening(relay);

  // Control: the same client straight to the server verifies, so the key and the server are fine.
  const direct = await connect({ path: real.path, policy: new Policy().sharedSecret(key) });
  direct.destroy();
  assert.equal(real.admitted.length, 1);

  const error = await connect({ path: squat, policy: new Policy().sharedSecret(key) }).then(
    () => assert.fail('connect() resolved through a relay that holds no key'),
    (e: unknown) => e,
  );
  assert.ok(isSecpolicyError(error) && error.code === ErrorCode.DENIED, String(error));
  const decision = error.decision as Decision;
  assert.equal(decision.result, Result.CHALLENGE);
  assert.match(decision.failures[0]!.message, /did not verify/);
  await real.nextDenial();
  assert.equal(real.admitted.length, 1, 'the server admitted no relayed connection');
  const reason = real.denied[0]!;
  relay.kill('SIGTERM');
  const out = (await relay.output()).stdout;
  const carried = (dir: string) => Math.max(0, ...[...out.matchAll(new RegExp(`^${dir} (\\d+)$`, 'gm'))].map((m) => Number(m[1])));
  // The relay carried the server's REQUEST and RESPONSE (2 x 56 bytes) to the client, which
  // refused that RESPONSE: the proof failed on its binding, not on a broken relay.
  assert.ok(carried('down') >= 112, out);
  // The server checked the client's relayed RESPONSE (a Decision with CHALLENGE), unless it saw the client hang up first.
  if ('result' in reason) {
    assert.equal(reason.result, Result.CHALLENGE);
    assert.ok(carried('up') >= 112, out);
  } else assert.ok([ErrorCode.PEER_UNAVAILABLE, ErrorCode.PROTOCOL].includes(reason.code as never), reason.message);
});

test('a python3 peer of version 2 verifies against the TypeScript server (createServer) and client (connect)', { skip }, async (t) => {
  const key = randomBytes(32);
  const real = await secretServer(t, key);
  const client = pythonPeer('client', real.path, 'secret', key.toString('hex'));
  t.after(() => reap(client));
  const out = await client.output();
  assert.equal(out.stdout, 'verified\nWELCOME\n', out.stderr);
  assert.equal(real.admitted.length, 1);

  const dir = tempDir('secpolicy-relay-');
  t.after(dir.cleanup);
  const server = pythonPeer('server', dir.path('py.sock'), 'secret', key.toString('hex'));
  t.after(() => reap(server));
  await listening(server);
  const socket = await connect({ path: dir.path('py.sock'), policy: new Policy().sharedSecret(key) });
  let got = '';
  socket.on('data', (d) => (got += d));
  while (got.length < 12) await once(socket, 'data');
  assert.equal(got, 'APP-MESSAGE\n');
  socket.end();
  assert.equal((await server.output()).stdout, 'listening\nverified\n');
});

test('a version-1 shared-secret peer is refused with a clear protocol error, never verified by a fallback', { skip }, async (t) => {
  const key = randomBytes(32);
  const { socket, peer } = await pythonClient(t, 'secret1', key.toString('hex'));
  await assert.rejects(new Policy().sharedSecret(key).apply(socket), (e: unknown) => {
    assert.ok(isSecpolicyError(e) && e.code === ErrorCode.PROTOCOL, String(e));
    assert.match(e.message, /version-1 frame .* shared-secret mechanism speaks version 2.*no fallback/);
    return true;
  });
  socket.destroy();
  // The old peer, for its part, refused our version-2 REQUEST (its assertion on the version).
  const out = await peer.output();
  assert.notEqual(out.code, 0);
  assert.doesNotMatch(out.stdout, /verified/);
});

test(
  'a peer in another network namespace: a root server looks its socket up there and verifies it',
  { skip: skip || needRoot() || needCommand('unshare') },
  async (t) => {
    const key = randomBytes(32);
    const real = await secretServer(t, key);
    const client = run('unshare', ['--net', PYTHON, '-c', PEER_PY, 'client', real.path, 'secret', key.toString('hex')]);
    t.after(() => reap(client));
    const out = await client.output();
    assert.equal(
      out.stdout,
      'verified\nWELCOME\n',
      out.stderr + JSON.stringify(real.denied.map((d) => ('message' in d ? d.message : d.failures))),
    );
  },
);

test(
  'a peer in another network namespace: a server that cannot enter it denies the peer and says why',
  { skip: skip || needRoot() || needCommand('unshare', 'setpriv') },
  async (t) => {
    const dir = tempDir('secpolicy-relay-');
    t.after(dir.cleanup);
    const key = randomBytes(32).toString('hex');
    const keyFile = dir.path('key');
    writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
    chownSync(keyFile, 65534, 65534);
    const sockDir = dir.path('run');
    mkdirSync(sockDir);
    chownSync(sockDir, 65534, 65534);
    const path = `${sockDir}/s.sock`;
    const server = run(process.execPath, [sharedDist('examples/secret-server.js'), path, keyFile], { as: { uid: 65534, gid: 65534 } });
    t.after(() => reap(server));
    await listening(server);
    const client = run('unshare', ['--net', PYTHON, '-c', PEER_PY, 'client', path, 'secret', key]);
    t.after(() => reap(client));
    const out = await client.output();
    assert.notEqual(out.code, 0, 'the client was not verified');
    server.kill('SIGTERM');
    const log = (await server.output()).stdout;
    assert.match(
      log,
      /denied pid=\d+: cannot bind the proof to this connection: .*another network namespace needs this side to run as root/,
    );
  },
);
