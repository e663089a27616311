import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { appendFileSync, chmodSync, copyFileSync, readFileSync, realpathSync } from 'node:fs';
import { test } from 'node:test';
import { Policy, Result } from '../../src/index.js';
import { needCommand, needNative, needRoot, run } from '../helpers/index.js';
import { PY, acceptFrom, pythonPeer, reap, socketServer } from './peers.js';

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

test(
  'memberOf sees supplementary groups from SO_PEERGROUPS (setpriv --groups)',
  { skip: needRoot() || needNative('peergroups') },
  async (t) => {
    const { path, server } = await socketServer(t);
    const member = pythonPeer(path, { as: { uid: 1, gid: 1, groups: [4, 24] } });
    t.after(() => reap(member));
    const socket = await acceptFrom(server, member);
    const d = await new Policy().memberOf('cdrom').apply(socket);
    assert.equal(d.allowed, true, JSON.stringify(d.failures));
    assert.deepEqual(
      [...d.peer.groups].sort((a, b) => a - b),
      [4, 24],
    );
    assert.equal((await new Policy().memberOf([4]).apply(socket)).allowed, true);
    // The primary group counts too; a group the peer lacks does not.
    assert.equal((await new Policy().memberOf('daemon').apply(socket)).allowed, true);
    const bin = await new Policy().memberOf('bin').apply(socket);
    assert.equal(bin.result, Result.MEMBER_OF);

    const cleared = pythonPeer(path, { as: { uid: 1, gid: 1 } });
    t.after(() => reap(cleared));
    const other = await acceptFrom(server, cleared);
    const none = await new Policy().memberOf('cdrom').apply(other);
    assert.equal(none.result, Result.MEMBER_OF);
    assert.deepEqual(none.peer.groups, []);
  },
);

test('programDigest matches the content of the executable, whatever its path', { skip: needRoot() || needCommand('socat') }, async (t) => {
  const { tmp, path, server } = await socketServer(t);
  const socat = realpathSync('/usr/bin/socat');
  const copy = tmp.path('socat-copy');
  copyFileSync(socat, copy);
  chmodSync(copy, 0o755);
  const digest = sha256(socat);

  const peer = run(copy, ['-u', `UNIX-CONNECT:${path}`, 'STDIN']);
  t.after(() => reap(peer));
  const socket = await acceptFrom(server, peer);
  // Same bytes, another file: the program rule (file identity) fails, the digest rule passes.
  const d = await new Policy().program('/usr/bin/socat').programDigest(digest).apply(socket);
  assert.equal(d.result, Result.PROGRAM);
  assert.equal((await new Policy().programDigest(['0'.repeat(64), digest.toUpperCase()]).apply(socket)).allowed, true);

  const wrong = await new Policy().programDigest(sha256(PY)).apply(socket);
  assert.equal(wrong.result, Result.PROGRAM_DIGEST);
  assert.equal(wrong.failures[0]!.actual, digest);
});

test(
  'programDigest is not fooled by its cache when the file is rewritten in place',
  { skip: needRoot() || needCommand('socat') },
  async (t) => {
    const { tmp, path, server } = await socketServer(t);
    const copy = tmp.path('socat-copy');
    copyFileSync(realpathSync('/usr/bin/socat'), copy);
    chmodSync(copy, 0o755);
    const before = sha256(copy);
    const first = run(copy, ['-u', `UNIX-CONNECT:${path}`, 'STDIN']);
    t.after(() => reap(first));
    assert.equal((await new Policy().programDigest(before).apply(await acceptFrom(server, first))).allowed, true);
    await reap(first);
    // Same inode, new bytes (a running executable cannot be written: only now, after exit).
    appendFileSync(copy, 'trailing bytes');
    const after = sha256(copy);
    const second = run(copy, ['-u', `UNIX-CONNECT:${path}`, 'STDIN']);
    t.after(() => reap(second));
    const socket = await acceptFrom(server, second);
    assert.equal((await new Policy().programDigest(before).apply(socket)).result, Result.PROGRAM_DIGEST);
    assert.equal((await new Policy().programDigest(after).apply(socket)).allowed, true);
  },
);

test('programDigest validates its argument up front', () => {
  const invalid = (field: string) => (e: unknown) =>
    (e as { code: string }).code === 'ERR_SECPOLICY_INVALID_ARG' && (e as Error).message.includes(`"${field}"`);
  assert.throws(() => new Policy().programDigest('abc'), invalid('programDigest'));
  assert.throws(() => new Policy().programDigest(['a'.repeat(64), 'g'.repeat(64)]), invalid('programDigest[1]'));
  assert.throws(() => new Policy().programDigest([]), invalid('programDigest'));
  assert.throws(() => new Policy().programDigest(42 as unknown as string), invalid('programDigest'));
});
