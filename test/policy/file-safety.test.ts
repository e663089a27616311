/**
 * loadPolicy() holds a policy file to the standard of a key file: real files, directories
 * and owners (chown to daemon and nobody, chmod g+w, the sticky bit), a symlink at the
 * path, and a /proc file whose content another process chose.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chmodSync, chownSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { ErrorCode, loadPolicy } from '../../src/index.js';
import { needCommand, needRoot, run, tempDir } from '../helpers/index.js';

const DAEMON = 1;
const NOBODY = 65534;

function fixture(t: { after: (fn: () => void) => void }) {
  const tmp = tempDir('secpolicy-policy-safety-');
  t.after(tmp.cleanup);
  const file = (name: string, mode = 0o644, dir = tmp.dir) => {
    const path = `${dir}/${name}`;
    writeFileSync(path, 'uid: 0\n');
    chmodSync(path, mode);
    return path;
  };
  return { tmp, file };
}

const refused = (message: RegExp) => ({ code: ErrorCode.POLICY_FILE, message });

test('a symlink at the path is refused, even to a good policy file', async (t) => {
  const { tmp, file } = fixture(t);
  const good = file('good.yaml');
  symlinkSync(good, tmp.path('link.yaml'));
  assert.equal((await loadPolicy(good)).rules.length, 1);
  await assert.rejects(loadPolicy(tmp.path('link.yaml')), refused(/link\.yaml: the policy file is a symbolic link: it is not followed/));
});

test('a file that its group or every user may write is refused', async (t) => {
  const { file } = fixture(t);
  await assert.rejects(loadPolicy(file('g.yaml', 0o664)), refused(/is writable by its group \(gid \d+, mode 0664\)/));
  await assert.rejects(loadPolicy(file('o.yaml', 0o646)), refused(/is writable by every user \(mode 0646\)/));
  assert.equal((await loadPolicy(file('ok.yaml', 0o640))).rules.length, 1, 'group read is fine');
});

test('a file owned by another non-root user (daemon, nobody) is refused, even read-only', { skip: needRoot() }, async (t) => {
  const { file } = fixture(t);
  for (const uid of [DAEMON, NOBODY]) {
    const path = file(`u${uid}.yaml`, 0o444);
    chownSync(path, uid, 0);
    await assert.rejects(loadPolicy(path), refused(new RegExp(`belongs to uid ${uid}, who could change who is allowed`)));
  }
});

test(
  'a directory above the file that another user owns, or its group may write without the sticky bit, is refused',
  { skip: needRoot() },
  async (t) => {
    const { tmp, file } = fixture(t);
    const owned = tmp.path('owned');
    mkdirSync(owned, { mode: 0o755 });
    const deep = `${owned}/deeper`;
    mkdirSync(deep, { mode: 0o755 });
    const inDeep = file('p.yaml', 0o644, deep);
    assert.equal((await loadPolicy(inDeep)).rules.length, 1);
    chownSync(owned, NOBODY, NOBODY);
    await assert.rejects(loadPolicy(inDeep), refused(new RegExp(`is in directory ${owned}, which belongs to uid ${NOBODY}`)));
    chownSync(owned, 0, 0);

    const shared = tmp.path('shared');
    mkdirSync(shared);
    chmodSync(shared, 0o775);
    const inShared = file('p.yaml', 0o644, shared);
    await assert.rejects(loadPolicy(inShared), refused(/which its group \(gid 0\) may write without the sticky bit \(mode 0775\)/));
    chmodSync(shared, 0o1775);
    assert.equal((await loadPolicy(inShared)).rules.length, 1, 'with the sticky bit, nobody else can replace our file');
    chmodSync(shared, 0o777);
    await assert.rejects(loadPolicy(inShared), refused(/which every user may write without the sticky bit/));
  },
);

test('a symlinked directory is judged by where it points', async (t) => {
  const { tmp, file } = fixture(t);
  const target = tmp.path('target');
  mkdirSync(target);
  chmodSync(target, 0o775);
  file('p.yaml', 0o644, target);
  symlinkSync(target, tmp.path('via'));
  await assert.rejects(loadPolicy(tmp.path('via/p.yaml')), refused(/may write without the sticky bit/));
});

test(
  'a /proc file whose size the kernel cannot tell is refused: another process names itself "uid: 0" and offers /proc/PID/comm',
  { skip: needCommand('python3') },
  async (t) => {
    // /proc/PID/comm is a 0644 file of the process's owner (us) that stat()s as 0 bytes and reads as the process's name.
    const child = run('python3', [
      '-c',
      "open('/proc/self/comm', 'w').write('uid: 0'); print('named', flush=True); import sys; sys.stdin.read()",
    ]);
    t.after(() => child.kill('SIGKILL'));
    const [line] = (await once(child.stdout!, 'data')) as [Buffer];
    assert.match(line.toString(), /^named/);
    await assert.rejects(
      loadPolicy(`/proc/${child.pid}/comm`),
      refused(/reports a size of 0 bytes but more could be read: its size cannot be known \(a \/proc or \/sys file\?\)/),
    );
  },
);
