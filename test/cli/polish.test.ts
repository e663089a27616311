/** The messages, flags and output details users meet first, through the built CLI as a real process. */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { needRoot, run, tempDir } from '../helpers/index.js';
import { CLI, fits, listener, secpolicy } from './cli.js';

test('a path that is not a socket says so, not ECONNREFUSED', async (t) => {
  const tmp = tempDir('secpolicy-polish-');
  t.after(() => tmp.cleanup());
  writeFileSync(tmp.path('file'), 'x');
  for (const [path, what] of [
    [tmp.path('file'), 'a regular file'],
    [tmp.dir, 'a directory'],
  ] as const) {
    const r = await secpolicy(['inspect', path]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, `secpolicy: ERR_SECPOLICY_CONNECT: cannot connect to ${path}: it is ${what}, not a socket\n`);
  }
});

test('proxy: a missing directory is ERR_SECPOLICY_NOT_FOUND, a forbidden one ERR_SECPOLICY_PERMISSION', { skip: needRoot() }, async (t) => {
  const tmp = tempDir('secpolicy-polish-');
  t.after(() => tmp.cleanup());
  writeFileSync(tmp.path('p.yaml'), 'uid: 0\n');
  const missing = await secpolicy([
    'proxy',
    '--listen',
    tmp.path('no/such/dir/p.sock'),
    '--to',
    tmp.path('t.sock'),
    '--policy',
    tmp.path('p.yaml'),
  ]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^secpolicy: ERR_SECPOLICY_NOT_FOUND: .*does not exist \(ENOENT\)\n$/);
  mkdirSync(tmp.path('private'), { mode: 0o700 });
  chmodSync(tmp.path('p.yaml'), 0o644);
  const denied = await secpolicy(
    ['proxy', '--listen', tmp.path('private/p.sock'), '--to', tmp.path('t.sock'), '--policy', tmp.path('p.yaml')],
    {
      as: { uid: 1, gid: 1 },
    },
  );
  assert.equal(denied.code, 2);
  assert.match(denied.stderr, /^secpolicy: ERR_SECPOLICY_PERMISSION: [^\n]*EACCES[^\n]*\n$/);
});

test('a YAML syntax error says each thing once, with the line and a caret under the column', async (t) => {
  const tmp = tempDir('secpolicy-polish-');
  t.after(() => tmp.cleanup());
  const file = tmp.path('bad.yaml');
  writeFileSync(file, 'uid: 0\nprogram: /usr/bin/x : y\n');
  const r = await secpolicy(['check', '--policy', file, tmp.path('s.sock')]);
  assert.equal(r.code, 2);
  const lines = r.stderr.split('\n');
  assert.equal(lines.length, 4, r.stderr);
  assert.match(
    lines[0]!,
    new RegExp(`^secpolicy: ERR_SECPOLICY_POLICY_FILE: ${file}: line 2, column (\\d+): not valid YAML or JSON: [^:]+$`),
  );
  const column = Number(/column (\d+)/.exec(lines[0]!)![1]);
  const what = lines[0]!.split('not valid YAML or JSON: ')[1]!;
  assert.equal(r.stderr.split(what).length, 2, 'the parser message appears once');
  assert.doesNotMatch(r.stderr, /at line \d/);
  assert.equal(lines[1], '  program: /usr/bin/x : y');
  assert.equal(lines[2], `${' '.repeat(2 + column - 1)}^`);
  assert.equal(lines[3], '');
});

/** Starts `secpolicy proxy ...` and resolves once stderr has a line matching `ready`. */
async function proxy(t: import('node:test').TestContext, args: string[], ready: RegExp) {
  const child = run(process.execPath, [CLI, 'proxy', ...args]);
  t.after(() => {
    child.kill('SIGTERM');
    return child.output();
  });
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d;
      if (ready.test(stderr)) resolve();
    });
    child.once('close', () => reject(new Error(`proxy exited: ${stderr}`)));
  });
  return { child, stderr: () => stderr };
}

test('proxy: --owner, --group, --allow-insecure-directory, a warning for a missing target, --quiet', { skip: needRoot() }, async (t) => {
  const tmp = tempDir('secpolicy-polish-');
  t.after(() => tmp.cleanup());
  writeFileSync(tmp.path('p.yaml'), 'uid: 0\n');
  const open = tmp.path('open');
  mkdirSync(open);
  chmodSync(open, 0o777);
  const base = ['--to', tmp.path('t.sock'), '--policy', tmp.path('p.yaml')];
  const refused = await secpolicy(['proxy', '--listen', `${open}/p.sock`, ...base]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /ERR_SECPOLICY_UNSAFE_PATH: .*allowInsecureDirectory|--allow-insecure-directory/);

  const p = await proxy(
    t,
    ['--listen', `${open}/p.sock`, ...base, '--allow-insecure-directory', '--owner', 'daemon', '--group', '1', '--mode', '0660'],
    /warning: target/,
  );
  const st = statSync(`${open}/p.sock`);
  assert.equal(st.uid, 1);
  assert.equal(st.gid, 1);
  assert.equal(st.mode & 0o777, 0o660);
  assert.match(p.stderr(), /listening on /);
  assert.match(p.stderr(), new RegExp(`warning: target ${tmp.path('t.sock')} does not exist \\(yet\\)`));

  const q = await proxy(t, ['--listen', tmp.path('q.sock'), ...base, '--quiet'], /warning: target/);
  assert.doesNotMatch(q.stderr(), /listening on/);
  q.child.kill('SIGTERM');
  await q.child.output();
  assert.doesNotMatch(q.stderr(), /stopped|no new connections/);
});

test('inspect --fail-on exits 1 at or above the severity; modeOctal beside mode in JSON', async (t) => {
  const tmp = tempDir('secpolicy-polish-');
  t.after(() => tmp.cleanup());
  const sock = tmp.path('s.sock');
  const server = await listener(sock, { mode: 0o666 });
  t.after(() => server.close());
  const json = await secpolicy(['inspect', '--json', sock]);
  assert.equal(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout) as { mode: number; modeOctal: string; findings: Array<{ code: string; severity: string }> };
  assert.equal(report.mode, 0o666);
  assert.equal(report.modeOctal, '0666');
  assert.ok(report.findings.some((f) => f.code === 'WORLD_WRITABLE' && f.severity === 'medium'));
  assert.equal((await secpolicy(['inspect', '--fail-on', 'medium', sock])).code, 1);
  assert.equal((await secpolicy(['inspect', '--fail-on', 'high', sock])).code, 0);
  const audit = await secpolicy(['audit', '--json']);
  assert.equal(audit.code, 0, audit.stderr);
  const mine = (JSON.parse(audit.stdout) as Array<{ path: string; mode: number; modeOctal: string }>).find((r) => r.path === sock);
  assert.equal(mine?.mode, 0o666);
  assert.equal(mine?.modeOctal, '0666');
});

test('keygen - writes the key to stdout and creates no file', async (t) => {
  const tmp = tempDir('secpolicy-polish-');
  t.after(() => tmp.cleanup());
  const r = await secpolicy(['keygen', '-'], { cwd: tmp.dir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^[0-9a-f]{64}\n$/);
  assert.equal(r.stderr, '');
  assert.equal(existsSync(tmp.path('-')), false);
  const quiet = await secpolicy(['keygen', '--quiet', tmp.path('k')]);
  assert.equal(quiet.code, 0);
  assert.equal(quiet.stdout, '');
  assert.equal(statSync(tmp.path('k')).mode & 0o777, 0o600);
});

test('COLUMNS sets the width of piped output', async (t) => {
  const tmp = tempDir('secpolicy-polish-');
  t.after(() => tmp.cleanup());
  const sock = tmp.path(`${'long-directory-name-'.repeat(3)}s.sock`);
  const server = await listener(sock);
  t.after(() => server.close());
  const wide = await secpolicy(['inspect', sock], { env: { COLUMNS: '200' } });
  assert.ok(
    wide.stdout.split('\n').some((line) => line.length > 80 && line.includes(sock)),
    wide.stdout,
  );
  const narrow = await secpolicy(['inspect', sock], { env: { COLUMNS: '50' } });
  assert.ok(fits(narrow.stdout, 50), narrow.stdout);
  const piped = await secpolicy(['inspect', sock]);
  assert.ok(fits(piped.stdout, 80));
});
