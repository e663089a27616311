/**
 * The program rule compares file identity (device + inode of /proc/PID/exe against the
 * rule's path), so a copy of a binary at another path fails, a hard link passes, and a
 * peer that vanished fails with a reason instead of throwing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, linkSync, realpathSync, symlinkSync } from 'node:fs';
import { once } from 'node:events';
import { Policy, Result } from '../../src/index.js';
import { needCommand, needNative, tempDir } from '../helpers/index.js';
import { connection, nodePeer, pythonPeer, socatPeer } from '../helpers/connection.js';

const node = realpathSync(process.execPath);

test('a node peer passes program(this node) and fails program(socat)', { skip: needNative('program') }, async (t) => {
  const c = await connection();
  t.after(() => c.close());
  assert.equal((await new Policy().program(process.execPath).apply(c.socket)).allowed, true);
  const d = await new Policy().program('/usr/bin/socat').apply(c.socket);
  assert.equal(d.result, Result.PROGRAM);
  assert.deepEqual(
    { rule: d.failures[0]!.rule, expected: d.failures[0]!.expected, actual: d.failures[0]!.actual },
    { rule: 'program', expected: '/usr/bin/socat', actual: node },
  );
  assert.match(d.failures[0]!.message, /compared by device and inode/);
  assert.equal((await new Policy().program(['/usr/bin/socat', process.execPath]).apply(c.socket)).allowed, true, 'an array means any of');
});

test('a socat peer passes program(socat) and fails program(node)', { skip: needCommand('socat') }, async (t) => {
  const c = await connection({ peer: socatPeer });
  t.after(() => c.close());
  const pass = await new Policy().program('/usr/bin/socat').apply(c.socket);
  assert.equal(pass.allowed, true, JSON.stringify(pass.failures));
  assert.equal(pass.peer.program, '/usr/bin/socat');
  assert.equal((await new Policy().program(process.execPath).apply(c.socket)).result, Result.PROGRAM);
});

test('a python3 peer passes through the /usr/bin/python3 symlink and its target', { skip: needCommand('/usr/bin/python3') }, async (t) => {
  const c = await connection({ peer: pythonPeer });
  t.after(() => c.close());
  const target = realpathSync('/usr/bin/python3');
  for (const path of ['/usr/bin/python3', target]) {
    assert.equal((await new Policy().program(path).apply(c.socket)).allowed, true, path);
  }
  assert.equal((await new Policy().program(process.execPath).apply(c.socket)).failures[0]!.actual, target);
});

test('a copy of node at another path fails program(node); a hard link to node passes', { skip: needNative('program') }, async (t) => {
  const tmp = tempDir('secpolicy-program-');
  t.after(() => tmp.cleanup());
  const copy = tmp.path('node-copy');
  copyFileSync(node, copy);
  const copied = await connection({ peer: nodePeer(copy) });
  t.after(() => copied.close());
  const d = await new Policy().program(node).apply(copied.socket);
  assert.equal(d.result, Result.PROGRAM, 'same content, same name pattern, different file');
  assert.equal(d.failures[0]!.actual, copy);
  assert.equal((await new Policy().program(copy).apply(copied.socket)).allowed, true);

  // A hard link is the same file, whatever its name; so is a symlink's target.
  const hard = tmp.path('hard-node');
  const soft = tmp.path('soft-node');
  let linkedToNode = true;
  try {
    linkSync(node, hard);
  } catch (e) {
    t.diagnostic(`cannot hard-link ${node} here (${(e as Error).message}); linking the copy instead`);
    linkSync(copy, hard);
    linkedToNode = false;
  }
  symlinkSync(node, soft);
  const real = await connection({ peer: nodePeer(node) });
  t.after(() => real.close());
  const viaLink = await new Policy().program(hard).apply(linkedToNode ? real.socket : copied.socket);
  assert.equal(viaLink.allowed, true, JSON.stringify(viaLink.failures));
  assert.equal((await new Policy().program(soft).apply(real.socket)).allowed, true);
  assert.equal(
    (await new Policy().program(tmp.path('missing')).apply(real.socket)).result,
    Result.PROGRAM,
    'a rule path that does not exist never matches',
  );
});

test('a peer killed after connecting fails the program rule with a reason, and its creds still count', async (t) => {
  const c = await connection();
  t.after(() => c.close());
  c.peer.kill('SIGKILL');
  await once(c.peer, 'exit');
  const d = await new Policy().uid(process.getuid!()).program(process.execPath).apply(c.socket);
  assert.equal(d.result, Result.PROGRAM);
  assert.equal(d.failures[0]!.actual, undefined);
  assert.match(d.failures[0]!.message, /^unknown: peer program: .*exited/);
  assert.equal(d.peer.program, undefined);
  assert.equal(d.peer.pid, c.peer.pid);
});
