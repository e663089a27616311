/** statPath through statx: identity, type, mode and owner as stat(1) reports them; refused paths. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, lstatSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK, statPath, statProcExe } from '../../src/native/index.js';
import { needCommand, needNative, run, tempDir } from '../helpers/index.js';
import { connection } from '../helpers/connection.js';

test('statPath agrees with stat(1) on device, inode, mode and owner', { skip: needCommand('stat') }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.cleanup());
  const file = tmp.path('f');
  writeFileSync(file, 'x');
  chmodSync(file, 0o640);
  for (const path of [file, process.execPath, '/']) {
    const out = (await run('stat', ['-c', '%Hd %Ld %i %f %u %g %W', path]).output()).stdout.trim().split(' ');
    const [major, minor, ino, mode, uid, gid, birth] = out;
    const { btimeSec, btimeNsec, ...s } = statPath(path)!;
    // Birth time: stat(1) prints 0 both where the filesystem keeps none (statPath: -1) and for a file born at 0.
    if (Number(birth) === 0) assert.ok(btimeSec === -1 || btimeSec === 0, `${path} birth ${btimeSec}`);
    else assert.equal(btimeSec, Number(birth), `${path} birth`);
    if (btimeSec! > 0) assert.equal(btimeNsec, Number(statSync(path, { bigint: true }).birthtimeNs % 1_000_000_000n), `${path} birth ns`);
    assert.deepEqual(
      s,
      {
        dev: Number(major) * 2 ** 20 + Number(minor),
        // A number while it fits a double exactly (a bigint past that).
        ino: Number(ino!),
        mode: parseInt(mode!, 16),
        uid: Number(uid),
        gid: Number(gid),
      },
      path,
    );
  }
  assert.equal(statPath(file)!.mode, S_IFREG | 0o640);
  assert.equal(BigInt(statPath(file)!.ino), statSync(file, { bigint: true }).ino);
});

test('statPath follows symlinks unless told not to, and sees sockets', async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.cleanup());
  const link = tmp.path('link');
  symlinkSync(process.execPath, link);
  assert.equal(statPath(link)!.ino, statPath(process.execPath)!.ino);
  assert.equal(statPath(link, true)!.mode & S_IFMT, S_IFLNK);
  assert.equal(BigInt(statPath(link, true)!.ino), lstatSync(link, { bigint: true }).ino);
  const c = await connection();
  t.after(() => c.close());
  assert.equal(statPath(c.path, true)!.mode, S_IFSOCK | 0o777);
});

test('statPath gives undefined for missing, too long and NUL-carrying paths', () => {
  assert.equal(statPath('/nonexistent/secpolicy'), undefined);
  assert.equal(statPath(`/${'a'.repeat(5000)}`), undefined);
  // The C string would end at the NUL and stat /usr/bin/node: refused.
  assert.equal(statPath(`${process.execPath}\0.copy`), undefined);
  assert.equal(statPath(''), undefined);
});

test('statProcExe stats /proc/PID/exe as statPath does, for pids of any length', async (t) => {
  assert.deepEqual(statProcExe(process.pid), statPath(`/proc/${process.pid}/exe`));
  // Under qemu-user /proc/PID/exe names the emulator, not node.
  if (!needNative('program')) assert.deepEqual(statProcExe(process.pid), statPath(process.execPath));
  const child = run('sleep', ['30']);
  t.after(() => child.kill());
  const pid = child.pid!;
  assert.deepEqual(statProcExe(pid), statPath(`/proc/${pid}/exe`));
  // A one-digit pid after a longer one: no digits of the earlier path are left behind.
  if (statPath('/proc/1/exe')) assert.deepEqual(statProcExe(1), statPath('/proc/1/exe'));
  assert.deepEqual(statProcExe(pid), statPath(`/proc/${pid}/exe`));
  assert.equal(statProcExe(2 ** 22 + 1), undefined, 'no such pid');
  assert.equal(statProcExe(0), undefined);
  assert.equal(statProcExe(-1), undefined);
});
