import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, realpathSync } from 'node:fs';
import { ErrorCode, inspect, type PeerReport } from '../../src/index.js';
import { needRoot, tempDir } from '../helpers/index.js';
import { intoHostCgroup } from '../helpers/cgroups.js';
import { fits, hasAnsi, listener, secpolicy } from './cli.js';

const NOBODY_IN_GROUPS = { uid: 65534, gid: 65534, groups: [4, 24] };
const python = realpathSync('/usr/bin/python3');

/** A directory nobody owns (so that a listener run as nobody can bind in it). */
function nobodyDir(t: { after: (fn: () => void) => void }) {
  const tmp = tempDir('secpolicy-inspect-');
  t.after(() => tmp.cleanup());
  const dir = tmp.path('run');
  mkdirSync(dir);
  chownSync(dir, 65534, 65534);
  chmodSync(dir, 0o755);
  return { root: tmp, dir, path: (name: string) => `${dir}/${name}` };
}

test('inspect --json reports the listener run as another user and its socket file', { skip: needRoot() }, async (t) => {
  const d = nobodyDir(t);
  const server = await listener(d.path('s.sock'), { as: NOBODY_IN_GROUPS, mode: 0o666 });
  t.after(() => server.close());
  intoHostCgroup(server.pid);
  const r = await secpolicy(['inspect', '--json', d.path('s.sock')]);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as PeerReport;
  assert.equal(report.path, d.path('s.sock'));
  assert.equal(report.abstract, false);
  assert.equal(report.pid, server.pid);
  assert.equal(report.uid, 65534);
  assert.equal(report.user, 'nobody');
  assert.equal(report.gid, 65534);
  assert.equal(report.group, 'nogroup');
  assert.deepEqual(report.groups, [
    { gid: 4, name: 'adm' },
    { gid: 24, name: 'cdrom' },
  ]);
  assert.equal(report.program, python);
  assert.deepEqual(report.owner, { uid: 65534, user: 'nobody', gid: 65534, group: 'nogroup' });
  assert.equal(report.mode, 0o666);
  assert.deepEqual(
    report.findings.map((f) => f.code),
    ['WORLD_WRITABLE'],
  );
  assert.equal(report.container, null, 'a listener on the host is in no container');
  assert.equal(report.label, undefined, 'no LSM on the test host gives sockets a label');
  assert.ok(report.unavailable.label, 'the missing label says why');
});

test('inspect prints aligned fields and findings within 80 columns, without colour when piped', { skip: needRoot() }, async (t) => {
  const d = nobodyDir(t);
  // A directory anyone may write to without the sticky bit: the socket can be replaced.
  chmodSync(d.dir, 0o777);
  const server = await listener(d.path('a-rather-long-socket-name-so-that-the-path-wraps.sock'), { as: NOBODY_IN_GROUPS, mode: 0o660 });
  t.after(() => server.close());
  intoHostCgroup(server.pid);
  const r = await secpolicy(['inspect', d.path('a-rather-long-socket-name-so-that-the-path-wraps.sock')]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(fits(r.stdout), r.stdout);
  assert.equal(hasAnsi(r.stdout), false);
  assert.match(r.stdout, new RegExp(`^pid +${server.pid}$`, 'm'));
  assert.match(r.stdout, /^user +65534 \(nobody\)$/m);
  assert.match(r.stdout, /^groups +4 \(adm\), 24 \(cdrom\)$/m);
  assert.match(r.stdout, new RegExp(`^program +${python}$`, 'm'));
  assert.match(r.stdout, /^file mode +0660$/m);
  assert.match(r.stdout, /^container +none$/m);
  assert.match(r.stdout, /^high +INSECURE_DIRECTORY +\/tmp\/.* is writable by\n +every user/m);
  // Values start in one column.
  const starts = r.stdout
    .split('\n')
    .filter((l) => /^(pid|user|group|program|file mode) /.test(l))
    .map((l) => /^.*?\S {2,}/.exec(l)![0].length);
  assert.equal(new Set(starts).size, 1, r.stdout);
});

test("inspect flags a directory owned by another user than the socket's owner", { skip: needRoot() }, async (t) => {
  const d = nobodyDir(t);
  // daemon owns the directory; nobody may write there through the group.
  chownSync(d.dir, 1, 65534);
  chmodSync(d.dir, 0o775);
  const server = await listener(d.path('s.sock'), { as: NOBODY_IN_GROUPS, mode: 0o600 });
  t.after(() => server.close());
  const report = await inspect(d.path('s.sock'));
  assert.deepEqual(
    report.findings.map((f) => [f.code, f.severity]),
    [['INSECURE_DIRECTORY', 'medium']],
  );
  assert.match(report.findings[0]!.message, new RegExp(`^${d.dir} belongs to uid 1`));
  assert.equal(report.mode, 0o600);
});

test('inspect reaches abstract names bound with their exact length (python3) and padded (node)', async (t) => {
  for (const program of ['python', 'node'] as const) {
    const name = `@secpolicy-inspect-${program}-${process.pid}-${Date.now()}`;
    const server = await listener(name, { program });
    t.after(() => server.close());
    const report = await inspect(name);
    assert.equal(report.pid, server.pid, program);
    assert.equal(report.program, program === 'python' ? python : realpathSync(process.execPath));
  }
});

test('inspect accepts @name for an abstract socket', async (t) => {
  const name = `@secpolicy-inspect-${process.pid}-${Date.now()}`;
  const server = await listener(name, { program: 'node' });
  t.after(() => server.close());
  const report = await inspect(name);
  assert.equal(report.path, name);
  assert.equal(report.abstract, true);
  assert.equal(report.pid, server.pid);
  assert.equal(report.uid, process.getuid!());
  assert.equal(report.owner, undefined);
  assert.equal(report.mode, undefined);
  assert.deepEqual(
    report.findings.map((f) => f.code),
    ['ABSTRACT_NAMESPACE'],
  );
  const r = await secpolicy(['inspect', name]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /ABSTRACT_NAMESPACE/);
});

test('inspect of a missing socket or a file that is not one fails with a one-line coded error, exit 2', async (t) => {
  const tmp = tempDir('secpolicy-inspect-');
  t.after(() => tmp.cleanup());
  const missing = await secpolicy(['inspect', tmp.path('nope.sock')]);
  assert.equal(missing.code, 2);
  assert.equal(missing.stdout, '');
  assert.equal(missing.stderr, `secpolicy: ERR_SECPOLICY_CONNECT: cannot connect to ${tmp.path('nope.sock')}: ENOENT\n`);
  const notSocket = await secpolicy(['inspect', tmp.dir]);
  assert.equal(notSocket.code, 2);
  assert.match(notSocket.stderr, /^secpolicy: ERR_SECPOLICY_CONNECT: .*\n$/);
  await assert.rejects(inspect(tmp.path('nope.sock')), { code: ErrorCode.CONNECT });
  await assert.rejects(inspect(''), { code: ErrorCode.INVALID_ARG });
  await assert.rejects(inspect('@'), { code: ErrorCode.INVALID_ARG });
  await assert.rejects(inspect(`@secpolicy-nobody-listens-${process.pid}`), { code: ErrorCode.CONNECT, message: /ECONNREFUSED/ });
});
