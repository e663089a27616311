/**
 * The native half of the held socket file: an O_PATH fd of a socket file, its mode through
 * statx on the fd, and the device and inode sock_diag records for a listener's bound file,
 * compared in the kernel's dev_t layout (major << 20 | minor), not glibc's.
 */
import assert from 'node:assert/strict';
import { chmodSync, lstatSync, openSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  closePathFd,
  fdIdentity,
  fdMode,
  handleFd,
  listenerBoundFile,
  listenerHandle,
  openPathFd,
  sameBoundFile,
  S_IFLNK,
  S_IFMT,
  S_IFSOCK,
} from '../../src/native/index.js';
import { closeServer, listenOn, needNative, tempDir } from '../helpers/index.js';

/** glibc's dev_t (what fs.stat reports) split into major and minor. */
function majorMinor(dev: bigint): [number, number] {
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  return [major, minor];
}

test('a socket file opens with O_PATH (a plain open fails with ENXIO); its mode is read through the fd and follows chmod', async (t) => {
  const tmp = tempDir('secpolicy-boundfile-');
  const path = tmp.path('s.sock');
  const server = await listenOn(path, () => {}, 0o640);
  t.after(async () => {
    await closeServer(server);
    tmp.cleanup();
  });
  assert.throws(() => openSync(path, 'r'), /ENXIO/);
  const fd = openPathFd(path);
  assert.ok(fd >= 0, `openPathFd: errno ${-fd}`);
  t.after(() => closePathFd(fd));
  assert.equal(readlinkSync(`/proc/self/fd/${fd}`), path);
  const flags = Number.parseInt(/flags:\s+([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);
  assert.ok(flags & 0o10000000, `O_PATH is set (flags ${flags.toString(8)})`);
  assert.ok(flags & 0o2000000, `O_CLOEXEC is set (flags ${flags.toString(8)})`);
  assert.equal(fdMode(fd), lstatSync(path).mode);
  assert.equal(fdMode(fd) & S_IFMT, S_IFSOCK);
  assert.equal(fdMode(fd) & 0o777, 0o640);
  chmodSync(path, 0o606);
  assert.equal(fdMode(fd) & 0o777, 0o606);
  const id = fdIdentity(fd)!;
  assert.equal(id.ino, statSync(path, { bigint: true }).ino);
});

test('a final symlink is opened as the link, never followed; a missing path is -ENOENT; a closed fd has no mode', (t) => {
  const tmp = tempDir('secpolicy-boundfile-');
  t.after(() => tmp.cleanup());
  writeFileSync(tmp.path('target'), '');
  symlinkSync(tmp.path('target'), tmp.path('link'));
  const fd = openPathFd(tmp.path('link'));
  assert.ok(fd >= 0);
  assert.equal(fdMode(fd) & S_IFMT, S_IFLNK);
  closePathFd(fd);
  assert.equal(fdMode(fd), -1);
  assert.equal(openPathFd(tmp.path('missing')), -2);
  assert.equal(openPathFd(`${tmp.path('x')}\0y`), -22);
});

test(
  "sock_diag's bound-file record matches the fd's statx identity, in the kernel's dev_t layout (not glibc's)",
  { skip: needNative('netlink') },
  async (t) => {
    const tmp = tempDir('secpolicy-boundfile-');
    const path = tmp.path('s.sock');
    const server = await listenOn(path, () => {});
    t.after(async () => {
      await closeServer(server);
      tmp.cleanup();
    });
    const listener = handleFd(listenerHandle(server)!)!;
    const bound = listenerBoundFile(listener);
    assert.equal(typeof bound, 'object', String(bound));
    const vfs = bound as { dev: number; ino: number };
    const fd = openPathFd(path);
    t.after(() => closePathFd(fd));
    const id = fdIdentity(fd)!;
    assert.ok(sameBoundFile(vfs, id));
    const st = statSync(path, { bigint: true });
    const [major, minor] = majorMinor(st.dev);
    assert.equal(vfs.dev, major * 2 ** 20 + minor, 'udiag_vfs_dev is major << 20 | minor');
    assert.equal(id.dev, vfs.dev);
    assert.equal(vfs.ino, Number(st.ino & 0xffffffffn));
    if (major !== 0) {
      // On a block device filesystem the two layouts differ: a comparison with fs.stat's dev would never match.
      assert.notEqual(Number(st.dev), vfs.dev);
      assert.equal(sameBoundFile(vfs, { dev: Number(st.dev), ino: st.ino }), false);
    } else {
      t.diagnostic(`${tmp.dir} is on a device with major 0: both dev_t layouts agree here`);
    }
    // Another socket file on the same filesystem: another inode, no match.
    const other = await listenOn(tmp.path('other.sock'), () => {});
    t.after(() => closeServer(other));
    const ofd = openPathFd(tmp.path('other.sock'));
    t.after(() => closePathFd(ofd));
    assert.equal(sameBoundFile(vfs, fdIdentity(ofd)!), false);
  },
);

test('a listener bound to no file (abstract) has no bound-file record', { skip: needNative('netlink') }, async (t) => {
  const server = await listenOn(`\0secpolicy-boundfile-${process.pid}`, () => {});
  t.after(() => closeServer(server));
  assert.match(String(listenerBoundFile(handleFd(listenerHandle(server)!)!)), /bound to no file/);
});
