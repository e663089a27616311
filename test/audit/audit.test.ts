import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { audit, type SocketReport } from '../../src/index.js';
import { closeServer, listenOn, needCommand, needRoot, run, sharedDist, tempDir } from '../helpers/index.js';
import { pathToFileURL } from 'node:url';
import { holdSockets } from './holder.js';
import { ssListening } from './ss.js';

const DAEMON = { uid: 1, gid: 1 };

function byPath(reports: SocketReport[], path: string): SocketReport {
  const r = reports.find((x) => x.path === path);
  assert.ok(
    r,
    `audit lists ${path} (${reports.length} sockets: ${reports
      .slice(0, 5)
      .map((x) => x.path)
      .join(', ')})`,
  );
  return r;
}

function codes(r: SocketReport): string[] {
  return r.findings.map((f) => f.code).sort();
}

test(
  'audit lists the same listening sockets as ss -xlp, with the same holders',
  { skip: needRoot() || needCommand('ss', 'setpriv') },
  async (t) => {
    const tmp = tempDir('secpolicy-audit-ss-');
    t.after(() => tmp.cleanup());
    const daemonDir = tmp.path('daemon');
    mkdirSync(daemonDir, { mode: 0o755 });
    chownSync(daemonDir, DAEMON.uid, DAEMON.gid);
    const abstract = `@secpolicy-audit-${randomBytes(6).toString('hex')}`;
    const server = await listenOn(tmp.path('node.sock'), () => {});
    t.after(() => closeServer(server));
    const asRoot = await holdSockets([{ address: abstract }, { address: tmp.path('with space.sock') }]);
    t.after(asRoot.stop);
    const asDaemon = await holdSockets(
      [{ address: `${daemonDir}/seq.sock`, kind: 'seqpacket' }, { address: `${daemonDir}/str.sock` }],
      DAEMON,
    );
    t.after(asDaemon.stop);

    const before = ssListening();
    const reports = await audit();
    const after = ssListening();

    // Sockets that came or went between the two ss runs belong to other processes of the
    // host; every socket present in both runs must be in the audit, exactly as ss shows it.
    const audited = new Map(reports.map((r) => [r.inode, r]));
    for (const [inode, entry] of before) {
      const later = after.get(inode);
      if (!later) continue;
      const r = audited.get(inode);
      assert.ok(r, `audit lists ${entry.path} (inode ${inode})`);
      assert.equal(r.path, entry.path);
      assert.equal(r.kind, entry.netid === 'u_seq' ? 'seqpacket' : 'stream');
      // A process ss saw holding it both times held it throughout (a forked child may come and go).
      for (const pid of entry.pids) if (later.pids.includes(pid)) assert.ok(r.pids.includes(pid), `pid ${pid} holds ${entry.path}`);
    }
    // And the other way: a socket the audit saw that still listens afterwards was there when
    // the second ss ran, so ss must list it (sockets of other tests come and go meanwhile).
    const still = new Set((await audit()).map((r) => r.inode));
    for (const r of reports) {
      if (still.has(r.inode)) assert.ok(after.has(r.inode), `${r.path} (inode ${r.inode}) is listed by ss too`);
    }

    const mine = byPath(reports, tmp.path('node.sock'));
    assert.deepEqual(mine.pids, [process.pid]);
    assert.equal(mine.holders[0]?.program, process.execPath);
    const abs = byPath(reports, abstract);
    assert.equal(abs.abstract, true);
    assert.deepEqual(abs.pids, [asRoot.pid]);
    assert.equal(byPath(reports, tmp.path('with space.sock')).kind, 'stream');
    const seq = byPath(reports, `${daemonDir}/seq.sock`);
    assert.equal(seq.kind, 'seqpacket');
    assert.deepEqual(seq.pids, [asDaemon.pid]);
    assert.equal(seq.holders[0]?.uid, DAEMON.uid);
    assert.equal(seq.holders[0]?.user, 'daemon');
    assert.equal(seq.owner?.uid, DAEMON.uid);
    assert.deepEqual(byPath(reports, `${daemonDir}/str.sock`).pids, [asDaemon.pid]);
  },
);

test('audit findings on sockets with bad modes and directories', { skip: needRoot() || needCommand('setpriv') }, async (t) => {
  const tmp = tempDir('secpolicy-audit-find-');
  t.after(() => tmp.cleanup());
  const dir = (name: string, mode: number, uid = 0): string => {
    const d = tmp.path(name);
    mkdirSync(d);
    chmodSync(d, mode); // not through mkdir's mode: the umask would cut it
    if (uid) chownSync(d, uid, uid);
    return d;
  };
  const ok = dir('ok', 0o755);
  const open = dir('open', 0o777);
  const sticky = dir('sticky', 0o1777);
  const groupOpen = dir('group-open', 0o775);
  const groupSticky = dir('group-sticky', 0o1775);
  const foreign = dir('foreign', 0o755, DAEMON.uid);
  const closed = dir('closed', 0o700);
  const abstractRoot = `@secpolicy-audit-${randomBytes(6).toString('hex')}`;
  const abstractDaemon = `@secpolicy-audit-${randomBytes(6).toString('hex')}`;
  const held = await holdSockets([
    { address: `${ok}/private.sock`, mode: 0o600 },
    { address: `${ok}/world.sock`, mode: 0o666 },
    { address: `${ok}/group.sock`, mode: 0o660 },
    { address: `${ok}/gone.sock`, mode: 0o600 },
    { address: `${ok}/replaced.sock`, mode: 0o600 },
    { address: `${open}/s.sock`, mode: 0o600 },
    { address: `${sticky}/s.sock`, mode: 0o600 },
    { address: `${groupOpen}/s.sock`, mode: 0o600 },
    { address: `${groupSticky}/s.sock`, mode: 0o600 },
    { address: `${foreign}/s.sock`, mode: 0o600 },
    { address: `${closed}/world.sock`, mode: 0o666 },
    { address: abstractRoot },
  ]);
  t.after(held.stop);
  const daemon = await holdSockets([{ address: abstractDaemon }], DAEMON);
  t.after(daemon.stop);
  unlinkSync(`${ok}/gone.sock`);
  unlinkSync(`${ok}/replaced.sock`);
  writeFileSync(`${ok}/replaced.sock`, 'not a socket');

  const reports = await audit();
  const find = (path: string) => byPath(reports, path);

  assert.deepEqual(find(`${ok}/private.sock`).findings, []);
  assert.equal(find(`${ok}/private.sock`).mode, 0o600);
  assert.deepEqual(codes(find(`${ok}/world.sock`)), ['ROOT_WORLD_ACCESSIBLE', 'WORLD_WRITABLE']);
  assert.equal(find(`${ok}/world.sock`).severity, 'high');
  assert.deepEqual(codes(find(`${ok}/group.sock`)), ['GROUP_WRITABLE']);
  assert.deepEqual(codes(find(`${ok}/gone.sock`)), ['PATH_MISSING']);
  assert.deepEqual(codes(find(`${ok}/replaced.sock`)), ['PATH_REPLACED']);

  const openDir = find(`${open}/s.sock`);
  assert.deepEqual(codes(openDir), ['INSECURE_DIRECTORY']);
  assert.equal(openDir.findings[0]!.severity, 'high');
  assert.match(openDir.findings[0]!.message, /writable by every user/);
  assert.deepEqual(find(`${sticky}/s.sock`).findings, [], 'a sticky world-writable directory is fine');
  // listen() refuses these directories too: a member of the group could replace the socket.
  const groupDir = find(`${groupOpen}/s.sock`);
  assert.deepEqual(codes(groupDir), ['INSECURE_DIRECTORY']);
  assert.equal(groupDir.findings[0]!.severity, 'medium');
  assert.match(groupDir.findings[0]!.message, /writable by its group \(gid 0, mode 0775, no sticky bit\)/);
  assert.deepEqual(find(`${groupSticky}/s.sock`).findings, [], 'a sticky group-writable directory is fine');
  const foreignDir = find(`${foreign}/s.sock`);
  assert.deepEqual(codes(foreignDir), ['INSECURE_DIRECTORY']);
  assert.match(foreignDir.findings[0]!.message, /belongs to uid 1/);
  const closedWorld = find(`${closed}/world.sock`);
  assert.deepEqual(codes(closedWorld), ['WORLD_WRITABLE'], 'a closed directory keeps a 0666 socket from everyone');
  assert.equal(closedWorld.findings[0]!.severity, 'low');

  assert.deepEqual(codes(find(abstractRoot)), ['ABSTRACT_NAMESPACE', 'ROOT_WORLD_ACCESSIBLE']);
  assert.equal(find(abstractRoot).mode, undefined);
  assert.deepEqual(codes(find(abstractDaemon)), ['ABSTRACT_NAMESPACE']);
  for (const r of reports) {
    for (let i = 1; i < r.findings.length; i++)
      assert.ok(rank(r.findings[i - 1]!.severity) >= rank(r.findings[i]!.severity), 'findings are sorted, most severe first');
  }
});

const rank = (s: string) => ['info', 'low', 'medium', 'high', 'critical'].indexOf(s);

test('with sock_diag, a socket file replaced by another listener is told apart (PATH_REPLACED)', async (t) => {
  try {
    await audit({ source: 'netlink' });
  } catch (e) {
    return t.skip(`sock_diag netlink unavailable here: ${(e as Error).message}`);
  }
  const tmp = tempDir('secpolicy-audit-vfs-');
  t.after(() => tmp.cleanup());
  const path = tmp.path('s.sock');
  const first = await holdSockets([{ address: path, mode: 0o600 }]);
  t.after(first.stop);
  unlinkSync(path); // the first listener lives on, unreachable by its path
  const second = await holdSockets([{ address: path, mode: 0o600 }]);
  t.after(second.stop);
  const reports = (await audit({ source: 'netlink' })).filter((r) => r.path === path);
  assert.equal(reports.length, 2);
  const old = reports.find((r) => r.pids[0] === first.pid)!;
  const current = reports.find((r) => r.pids[0] === second.pid)!;
  assert.deepEqual(codes(old), ['PATH_REPLACED']);
  assert.match(old.findings[0]!.message, /another socket than the one bound/);
  assert.deepEqual(current.findings, []);
  // /proc/net/unix has no file identity: it lists both, and cannot tell which is which.
  const viaProc = (await audit({ source: 'proc' })).filter((r) => r.path === path);
  assert.deepEqual(viaProc.map((r) => r.inode).sort(), reports.map((r) => r.inode).sort());
});

test(
  "audit as an unprivileged user: other users' holders are hidden (NO_HOLDER), its own are seen, closed directories are PATH_UNREADABLE",
  { skip: needRoot() || needCommand('setpriv') },
  async (t) => {
    const NOBODY = { uid: 65534, gid: 65534 };
    const tmp = tempDir('secpolicy-audit-nobody-');
    t.after(() => tmp.cleanup());
    const closed = tmp.path('closed');
    mkdirSync(closed);
    chmodSync(closed, 0o700);
    const rootHeld = await holdSockets([
      { address: tmp.path('root.sock'), mode: 0o600 },
      { address: `${closed}/hidden.sock`, mode: 0o600 },
    ]);
    t.after(rootHeld.stop);
    const nobodyDir = tmp.path('nobody');
    mkdirSync(nobodyDir);
    chownSync(nobodyDir, NOBODY.uid, NOBODY.gid);
    const ownHeld = await holdSockets([{ address: `${nobodyDir}/own.sock`, mode: 0o600 }], NOBODY);
    t.after(ownHeld.stop);
    const module = pathToFileURL(sharedDist('src/audit/audit.js')).href;
    const script = `import(${JSON.stringify(module)}).then(async (m) => console.log(JSON.stringify(await m.audit())))`;
    const { code, stdout, stderr } = await run(process.execPath, ['-e', script], { as: NOBODY }).output();
    assert.equal(code, 0, stderr);
    const reports = JSON.parse(stdout) as SocketReport[];
    const hidden = byPath(reports, tmp.path('root.sock'));
    assert.deepEqual(hidden.pids, []);
    assert.deepEqual(codes(hidden), ['NO_HOLDER']);
    // A file nobody may not even look at is not reported as gone.
    assert.deepEqual(codes(byPath(reports, `${closed}/hidden.sock`)), ['NO_HOLDER', 'PATH_UNREADABLE']);
    const own = byPath(reports, `${nobodyDir}/own.sock`);
    assert.deepEqual(own.pids, [ownHeld.pid]);
    assert.equal(own.holders[0]?.user, 'nobody');
  },
);

test('audit validates its options', async () => {
  await assert.rejects(audit({ source: 'nope' as 'proc' }), { code: 'ERR_SECPOLICY_INVALID_ARG', message: /options\.source/ });
  await assert.rejects(audit({ onProgress: 5 as never }), { code: 'ERR_SECPOLICY_INVALID_ARG', message: /options\.onProgress/ });
});

test('audit reports scan progress up to the total', async () => {
  const seen: Array<[number, number]> = [];
  await audit({ onProgress: (done, total) => seen.push([done, total]) });
  assert.ok(seen.length > 0);
  const [done, total] = seen[seen.length - 1]!;
  assert.equal(done, total);
});
