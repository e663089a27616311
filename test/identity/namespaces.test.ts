import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { Policy, Result } from '../../src/index.js';
import { ownNamespaces } from '../../src/identity/namespaces.js';
import { needCommand, needRoot, run, tempDir } from '../helpers/index.js';
import { PY, acceptFrom, pythonPeer, reap, socketServer, waitForOutput } from './peers.js';

const skip = needRoot('creates namespaces (unshare)') || needCommand('unshare');

test('a peer in its own pid namespace: pid translated into ours, host() fails, other namespaces shared', { skip }, async (t) => {
  const { path, server } = await socketServer(t);
  const child = pythonPeer(path, { prefix: ['unshare', '--pid', '--fork'] });
  t.after(() => reap(child));
  const socket = await acceptFrom(server, child);
  const [, innerPid] = (await waitForOutput(child, '\n')).split('\n')[0]!.split(' ');
  const ours = ownNamespaces();
  assert.ok(typeof ours !== 'string');

  const d = await new Policy().host().sameNamespace(['mnt', 'net', 'user', 'ipc', 'uts']).program(PY).apply(socket);
  const peer = d.peer;
  // It is pid 1 in its namespace; we see it under its pid in ours.
  assert.equal(innerPid, '1');
  assert.notEqual(peer.pid, 1);
  assert.match(readFileSync(`/proc/${peer.pid}/status`, 'utf8'), new RegExp(`NSpid:\\s+${peer.pid}\\s+1\\n`));
  assert.equal(d.result, Result.HOST);
  assert.match(d.failures[0]!.message, /pid namespace/);
  assert.notEqual(peer.namespaces!.pid, ours.pid);
  assert.equal(peer.namespaces!.mnt, ours.mnt);

  const same = await new Policy().sameNamespace('pid').apply(socket);
  assert.equal(same.result, Result.NAMESPACE);
});

test('a peer in its own network namespace: sameNamespace("net") fails, host() holds', { skip }, async (t) => {
  const { path, server } = await socketServer(t);
  // A path socket is reached through the filesystem, whatever the network namespace.
  const child = pythonPeer(path, { prefix: ['unshare', '--net'] });
  t.after(() => reap(child));
  const socket = await acceptFrom(server, child);
  assert.equal((await new Policy().host().sameNamespace(['pid', 'mnt']).apply(socket)).allowed, true);
  const d = await new Policy().sameNamespace('net').apply(socket);
  assert.equal(d.result, Result.NAMESPACE);
  assert.match(d.failures[0]!.message, /net namespace/);
});

test('a peer that is root in its own user namespace is seen as the uid it maps to here', { skip }, async (t) => {
  const { path, server } = await socketServer(t);
  const child = pythonPeer(path, {
    as: { uid: 1, gid: 1 },
    prefix: ['unshare', '--user', '--map-root-user'],
    body: 'print(os.getuid(),flush=True)\nsys.stdin.read()',
  });
  t.after(() => reap(child));
  const socket = await acceptFrom(server, child);
  const d = await new Policy().uid(1).gid(1).sameNamespace('user').apply(socket);
  assert.equal(d.peer.uid, 1);
  assert.equal(d.result, Result.NAMESPACE);
  const root = await new Policy().uid(0).apply(socket);
  assert.equal(root.allowed, false);
});

/**
 * A server inside `unshare --user --map-root-user --pid --fork --mount-proc`: a peer from
 * outside has no pid there (0) and, being another uid, no mapped ids (65534).
 */
const SERVER = `
import fs from 'node:fs';
import net from 'node:net';
const { Policy } = await import(process.argv[1]);
const path = process.argv[2];
const srv = net.createServer(async (s) => {
  const policy = new Policy().program('/usr/bin/python3').uid(65534).user('nobody').gid(65534).memberOf(65534).host().container();
  const d = await policy.apply(s);
  process.stdout.write(JSON.stringify({ peer: d.peer.toJSON(), failures: d.failures.map((f) => [f.rule, f.message]) }) + '\\n');
  s.destroy();
  srv.close();
}).listen(path, () => { fs.chmodSync(path, 0o666); console.log('listening'); });
`;

test('pid 0 and unmapped ids are described as such and fail every rule that needs them', { skip }, async (t) => {
  const tmp = tempDir('secpolicy-userns-');
  t.after(() => tmp.cleanup());
  const path = tmp.path('inner.sock');
  const index = fileURLToPath(new URL('../../src/index.js', import.meta.url));
  const server = run('unshare', [
    '--user',
    '--map-root-user',
    '--pid',
    '--fork',
    '--mount-proc',
    process.execPath,
    '--input-type=module',
    '-e',
    SERVER,
    index,
    path,
  ]);
  t.after(() => reap(server));
  await waitForOutput(server, 'listening');
  const client = pythonPeer(path, { as: { uid: 1, gid: 1 } });
  t.after(() => reap(client));
  const out = await server.output();
  const { peer, failures } = JSON.parse(out.stdout.split('\n').find((l) => l.startsWith('{'))!);
  assert.equal(peer.pid, 0);
  assert.equal(peer.uid, 65534);
  assert.equal(peer.gid, 65534);
  assert.equal(peer.pinning, 'none');
  assert.equal(peer.program, undefined);
  assert.equal(peer.user, undefined);
  assert.equal(peer.namespaces, undefined);
  assert.equal(peer.container, undefined);
  const byRule = Object.fromEntries(failures);
  assert.deepEqual(Object.keys(byRule).sort(), ['container', 'gid', 'host', 'memberOf', 'program', 'uid', 'user']);
  assert.match(byRule.program, /pid 0/);
  assert.match(byRule.uid, /unmapped/);
  assert.match(byRule.gid, /unmapped/);
  assert.match(byRule.user, /unmapped/);
  assert.match(byRule.host, /pid 0/);
  assert.match(byRule.container, /pid 0/);
});
