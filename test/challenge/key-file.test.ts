/** Key files: the checks made on the opened descriptor, and `secpolicy keygen`. */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { ErrorCode, Policy, isSecpolicyError } from '../../src/index.js';
import { readKeyFile } from '../../src/challenge/index.js';
import { needCommand, needRoot, run, tempDir } from '../helpers/index.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const KEY = 'k'.repeat(32);
const withCode = (code: string, pattern?: RegExp) => (e: unknown) =>
  isSecpolicyError(e) && e.code === code && (!pattern || pattern.test(e.message));

function fixture(t: { after: (fn: () => void) => void }) {
  const tmp = tempDir('secpolicy-key-');
  t.after(tmp.cleanup);
  const file = (name: string, content: string | Buffer, mode = 0o600) => {
    const p = tmp.path(name);
    writeFileSync(p, content, { mode });
    chmodSync(p, mode);
    return p;
  };
  return { tmp, file };
}

test('the key is the file content with one trailing newline stripped', (t) => {
  const { file } = fixture(t);
  assert.equal(readKeyFile(file('a', `${KEY}\n`)).toString(), KEY);
  assert.equal(readKeyFile(file('b', KEY)).toString(), KEY);
  assert.equal(readKeyFile(file('c', `${KEY}\n\n`)).toString(), `${KEY}\n`);
  const binary = Buffer.from(Array.from({ length: 20 }, (_, i) => i * 13));
  assert.deepEqual(readKeyFile(file('d', binary)), binary);
});

test('group or other permission bits are refused', (t) => {
  const { file } = fixture(t);
  for (const mode of [0o640, 0o604, 0o660, 0o644, 0o610, 0o601]) {
    assert.throws(() => readKeyFile(file(`m${mode.toString(8)}`, KEY, mode)), withCode(ErrorCode.KEY_FILE, /chmod 600/), mode.toString(8));
  }
  assert.equal(readKeyFile(file('ok400', KEY, 0o400)).length, 32);
});

test(
  'a symlink is refused, even to a good key file; a directory, a FIFO and a missing file are refused',
  { skip: needCommand('mkfifo') },
  (t) => {
    const { tmp, file } = fixture(t);
    const good = file('good', KEY);
    symlinkSync(good, tmp.path('link'));
    assert.throws(() => readKeyFile(tmp.path('link')), withCode(ErrorCode.KEY_FILE, /symbolic link/));
    mkdirSync(tmp.path('dir'), { mode: 0o700 });
    assert.throws(() => readKeyFile(tmp.path('dir')), withCode(ErrorCode.KEY_FILE, /not a regular file/));
    assert.equal(spawnSync('mkfifo', ['-m', '600', tmp.path('fifo')]).status, 0);
    assert.throws(() => readKeyFile(tmp.path('fifo')), withCode(ErrorCode.KEY_FILE, /not a regular file/));
    assert.throws(() => readKeyFile(tmp.path('missing')), withCode(ErrorCode.KEY_FILE, /ENOENT/));
  },
);

test('a key file owned by another user is refused', { skip: needRoot() }, (t) => {
  const { file } = fixture(t);
  const p = file('daemon', KEY);
  chownSync(p, 1, 1);
  assert.throws(() => readKeyFile(p), withCode(ErrorCode.KEY_FILE, /owned by uid 1/));
});

test('a key shorter than 16 bytes is refused with ERR_SECPOLICY_WEAK_SECRET', (t) => {
  const { file } = fixture(t);
  assert.throws(() => readKeyFile(file('short', `${'x'.repeat(15)}\n`)), withCode(ErrorCode.WEAK_SECRET));
  assert.throws(() => readKeyFile(file('empty', '')), withCode(ErrorCode.WEAK_SECRET));
  assert.equal(readKeyFile(file('sixteen', `${'x'.repeat(16)}\n`)).length, 16);
  assert.throws(() => new Policy().sharedSecret(new Uint8Array(15)), withCode(ErrorCode.WEAK_SECRET));
  assert.throws(() => new Policy().sharedSecret({ keyFile: '' }), withCode(ErrorCode.INVALID_ARG));
  assert.throws(() => new Policy().sharedSecret('secret' as never), withCode(ErrorCode.INVALID_ARG));
  new Policy().sharedSecret(new Uint8Array(16));
});

test('messages name the file, never its content', (t) => {
  const { file } = fixture(t);
  const secret = 'do-not-print-me!';
  const p = file('leaky', secret, 0o644);
  assert.throws(
    () => readKeyFile(p),
    (e: unknown) => isSecpolicyError(e) && e.message.includes(p) && !e.message.includes(secret),
  );
});

function keygen(file: string, env?: NodeJS.ProcessEnv) {
  return spawnSync(process.execPath, [CLI, 'keygen', file], { encoding: 'utf8', ...(env && { env }) });
}

test('secpolicy keygen writes 32 random bytes as hex, mode 0600, and the key reads back', (t) => {
  const { tmp } = fixture(t);
  const r = keygen(tmp.path('key'));
  assert.equal(r.status, 0, r.stderr);
  const st = lstatSync(tmp.path('key'));
  assert.equal(st.mode & 0o7777, 0o600);
  assert.ok(st.isFile());
  const text = readFileSync(tmp.path('key'), 'utf8');
  assert.match(text, /^[0-9a-f]{64}\n$/);
  assert.equal(readKeyFile(tmp.path('key')).toString(), text.trimEnd());
  assert.equal(keygen(tmp.path('key2')).status, 0);
  assert.notEqual(readFileSync(tmp.path('key2'), 'utf8'), text, 'two keys differ');
});

test('keygen under umask 000 still creates mode 0600', { skip: needCommand('sh') }, async (t) => {
  const { tmp } = fixture(t);
  const child = run('sh', ['-c', `umask 000 && exec "${process.execPath}" "${CLI}" keygen "${tmp.path('key')}"`]);
  assert.equal((await child.output()).code, 0);
  assert.equal(lstatSync(tmp.path('key')).mode & 0o777, 0o600);
});

test('keygen refuses an existing file or symlink with exit code 2 and ERR_SECPOLICY_FILE_EXISTS, touching nothing', (t) => {
  const { tmp, file } = fixture(t);
  const existing = file('existing', 'keep me', 0o644);
  const r = keygen(existing);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /ERR_SECPOLICY_FILE_EXISTS/);
  assert.equal(readFileSync(existing, 'utf8'), 'keep me');
  assert.equal(lstatSync(existing).mode & 0o777, 0o644);
  // A dangling symlink must not be followed to create its target.
  symlinkSync(tmp.path('target'), tmp.path('dangling'));
  const s = keygen(tmp.path('dangling'));
  assert.equal(s.status, 2);
  assert.match(s.stderr, /ERR_SECPOLICY_FILE_EXISTS/);
  assert.throws(() => lstatSync(tmp.path('target')));
  const m = keygen(tmp.path('no/such/dir/key'));
  assert.equal(m.status, 2);
  assert.match(m.stderr, /ERR_SECPOLICY_KEY_FILE/);
  assert.equal(spawnSync(process.execPath, [CLI, 'keygen'], { encoding: 'utf8' }).status, 2, 'missing argument is a usage error');
});
