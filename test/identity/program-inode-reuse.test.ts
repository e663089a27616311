/**
 * The program rule compares the peer's executable with the file at the rule's path by
 * file identity, and keeps that identity for a moment between connections. Replacing the
 * trusted file by rename frees its inode; on filesystems that hand out the lowest free
 * inode (ext4) the next file created gets the same number on the same device. A file
 * made after the trusted one was looked at must never pass for it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, renameSync, rmSync, statSync, statfsSync } from 'node:fs';
import { test } from 'node:test';
import { Policy } from '../../src/index.js';
import { programFiles, programMatches } from '../../src/policy/program-file.js';
import { statPath } from '../../src/native/index.js';
import { needCommand, run } from '../helpers/index.js';
import { acceptFrom, reap, socketServer } from './peers.js';
import { unixClientSource } from '../helpers/c-client.js';

/** Connects to argv[1], says `up`, holds the connection until the server closes it. */
const CLIENT = unixClientSource(`
#ifdef OTHER
  puts("another program");
#endif
  puts("up");
  fflush(stdout);
  char buf[256];
  while (read(s, buf, sizeof buf) > 0) {}
  return 0;
`);

function compile(out: string, defines: string[] = []): void {
  const r = spawnSync('cc', ['-O2', ...defines.map((d) => `-D${d}`), '-x', 'c', '-o', out, '-'], { input: CLIENT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cc failed: ${r.stderr}`);
}

const FS_NAMES: Record<number, string> = {
  0xef53: 'ext2/3/4',
  0x01021994: 'tmpfs',
  0x58465342: 'xfs',
  0x9123683e: 'btrfs',
  0x794c7630: 'overlayfs',
};

test(
  'a trusted program replaced by rename, its inode reused by another file at once: the other file is not the program',
  { skip: needCommand('cc') },
  async (t) => {
    const { server, path, tmp } = await socketServer(t, 'secpolicy-inode-reuse-');
    const fs = statfsSync(tmp.dir).type;
    t.diagnostic(`${tmp.dir} is on ${FS_NAMES[fs] ?? `filesystem type 0x${fs.toString(16)}`}`);
    mkdirSync(tmp.path('build'));
    mkdirSync(tmp.path('bin'));
    mkdirSync(tmp.path('evil'));
    compile(tmp.path('build/trusted'));
    compile(tmp.path('build/other'), ['OTHER']);
    const trusted = tmp.path('bin/client');
    copyFileSync(tmp.path('build/trusted'), trusted);
    spawnSync('chmod', ['0755', trusted]);

    // Other processes may take the freed inode first (a shared /tmp): a few rounds, each with a fresh update.
    let evil: string | undefined;
    let oldIno = 0;
    let policy = new Policy();
    for (let round = 0; round < 5 && evil === undefined; round++) {
      // The trusted program connects and passes: its identity is now what the rule holds.
      policy = new Policy().program(trusted);
      const first = run(trusted, [path]);
      t.after(() => reap(first));
      const d1 = await policy.apply(await acceptFrom(server, first));
      assert.equal(d1.allowed, true, JSON.stringify(d1.failures));
      await reap(first);

      // An update replaces it by rename: the old inode is free (nothing runs or holds it).
      oldIno = statSync(trusted).ino;
      copyFileSync(tmp.path('build/trusted'), `${trusted}.new`);
      renameSync(`${trusted}.new`, trusted);
      // Other files, made right after, on the same device: the first to get the old inode runs.
      for (let i = 0; i < 16 && evil === undefined; i++) {
        const f = tmp.path(`evil/x${round}-${i}`);
        copyFileSync(tmp.path('build/other'), f);
        if (statSync(f).ino === oldIno) evil = f;
      }
    }
    if (evil === undefined) {
      t.skip(`this filesystem (${FS_NAMES[fs] ?? fs}) did not hand out the freed inode again`);
      return;
    }
    spawnSync('chmod', ['0755', evil]);
    const attacker = run(evil, [path]);
    t.after(() => reap(attacker));
    const d2 = await policy.apply(await acceptFrom(server, attacker));
    assert.equal(d2.allowed, false, `a file with the freed inode ${oldIno} passed as ${trusted}`);
    assert.match(d2.failures[0]!.message, /is not the file at/);
    rmSync(tmp.path('evil'), { recursive: true, force: true });
  },
);

test('programMatches: the same device and inode with another birth time is another file', (t) => {
  const self = statPath(process.execPath)!;
  const files = programFiles([process.execPath]);
  assert.equal(programMatches(self, files), true, 'the file itself');
  if (self.btimeSec === undefined || self.btimeSec < 0) {
    t.diagnostic('this filesystem reports no birth time: a match is verified by a fresh stat instead');
  } else {
    assert.equal(programMatches({ ...self, btimeNsec: (self.btimeNsec! + 1) % 1e9 }, files), false, 'born another time');
    assert.equal(programMatches({ ...self, btimeSec: self.btimeSec + 1 }, files), false, 'born another second');
  }
  assert.equal(programMatches({ ...self, ino: 1 }, files), false, 'another inode');
  // Without a birth time on the peer's side the identity is verified by stat-ing the path again.
  assert.equal(programMatches({ ...self, btimeSec: -1, btimeNsec: -1 }, files), true);
});
