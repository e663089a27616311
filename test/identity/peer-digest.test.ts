/**
 * programDigest is work a peer chooses: the size of the file it runs. A large executable
 * (a real ELF padded with a sparse tail, which still runs) must not stall the verifications
 * of other connections, and one above the size cap is unknown, with the reason.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  chmodSync,
  copyFileSync,
  createReadStream,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
  utimesSync,
} from 'node:fs';
import { test } from 'node:test';
import { MAX_DIGEST_BYTES, Policy, Result } from '../../src/index.js';
import { needCommand, run } from '../helpers/index.js';
import { acceptFrom, pythonPeer, reap, socketServer } from './peers.js';

const skip = needCommand('socat') || needCommand('python3');

async function sha256Stream(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** A copy of socat padded (sparse) to `size` bytes. */
function bigCopy(dir: { path: (n: string) => string }, size: number): string {
  const copy = dir.path('socat-big');
  copyFileSync(realpathSync('/usr/bin/socat'), copy);
  truncateSync(copy, size);
  chmodSync(copy, 0o755);
  return copy;
}

/** Runs `copy`, connected to `path`. */
function bigPeer(t: Parameters<typeof socketServer>[0], copy: string, path: string) {
  const child = run(copy, ['-u', `UNIX-CONNECT:${path}`, 'STDIN']);
  t.after(() => reap(child));
  return child;
}

test('a large executable is hashed off the event loop: a concurrent verification is answered first', { skip }, async (t) => {
  const { tmp, path, server } = await socketServer(t);
  const copy = bigCopy(tmp, 256 * 1024 * 1024);
  const digest = await sha256Stream(copy);
  const child = bigPeer(t, copy, path);
  const big = await acceptFrom(server, child);
  const legit = pythonPeer(path);
  t.after(() => reap(legit));
  const other = await acceptFrom(server, legit);

  const order: string[] = [];
  const slow = new Policy()
    .programDigest(digest)
    .apply(big)
    .then((d) => (order.push('digest'), d));
  const fast = new Policy()
    .uid(process.getuid!())
    .apply(other)
    .then((d) => (order.push('uid'), d));
  const [d1, d2] = await Promise.all([slow, fast]);
  assert.equal(d1.allowed, true, JSON.stringify(d1.failures));
  assert.equal(d2.allowed, true, JSON.stringify(d2.failures));
  assert.deepEqual(order, ['uid', 'digest'], 'the uid check must not wait for the hash');
  // applySync hashes on the calling thread, bounded by the same cap: the same answer.
  assert.equal(new Policy().programDigest(digest).applySync(big).allowed, true);
});

test('an executable above the digest size cap is unknown, and says why', { skip }, async (t) => {
  const { tmp, path, server } = await socketServer(t);
  const child = bigPeer(t, bigCopy(tmp, MAX_DIGEST_BYTES + 4096), path);
  const socket = await acceptFrom(server, child);
  for (const d of [
    await new Policy().programDigest('0'.repeat(64)).apply(socket),
    new Policy().programDigest('0'.repeat(64)).applySync(socket),
  ]) {
    assert.equal(d.result, Result.PROGRAM_DIGEST);
    assert.equal(d.failures[0]!.unknown, true);
    assert.match(d.failures[0]!.message, /larger than the digest size cap/);
    // unknown under not, too
    assert.equal(new Policy().not(new Policy().programDigest('0'.repeat(64))).applySync(socket).allowed, false);
  }
});

test('the digest cache is not fooled by a replacement that reuses the inode, size and mtime', { skip }, async (t) => {
  const { tmp, path, server } = await socketServer(t);
  const file = tmp.path('socat-copy');
  copyFileSync(realpathSync('/usr/bin/socat'), file);
  appendFileSync(file, Buffer.alloc(16, 1));
  chmodSync(file, 0o755);
  const trusted = await sha256Stream(file);
  const before = statSync(file, { bigint: true });
  const first = run(file, ['-u', `UNIX-CONNECT:${path}`, 'STDIN']);
  t.after(() => reap(first));
  assert.equal((await new Policy().programDigest(trusted).apply(await acceptFrom(server, first))).allowed, true);
  await reap(first);
  // The file is removed, its inode freed; the attacker's file of the same size and mtime,
  // renamed into place, gets an inode number now, often the same one on ext4.
  rmSync(file);
  // A few candidates, kept until one got the freed inode number (bounded).
  let evil: string | undefined;
  for (let i = 0; i < 32 && evil === undefined; i++) {
    const candidate = tmp.path(`evil-${i}`);
    copyFileSync(realpathSync('/usr/bin/socat'), candidate);
    if (statSync(candidate, { bigint: true }).ino === before.ino) evil = candidate;
  }
  if (evil === undefined) return t.skip(`the file system did not reuse inode ${before.ino} for 32 new files`);
  appendFileSync(evil, Buffer.alloc(16, 2));
  chmodSync(evil, 0o755);
  renameSync(evil, file);
  utimesSync(file, before.atime, before.mtime);
  const after = statSync(file, { bigint: true });
  assert.equal(after.size, before.size);
  assert.equal(after.ino, before.ino);
  const second = run(file, ['-u', `UNIX-CONNECT:${path}`, 'STDIN']);
  t.after(() => reap(second));
  const d = await new Policy().programDigest(trusted).apply(await acceptFrom(server, second));
  assert.equal(d.result, Result.PROGRAM_DIGEST, 'the replacement is hashed, not taken from the cache');
  assert.equal(d.failures[0]!.actual, await sha256Stream(file));
});
