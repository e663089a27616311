/**
 * Names that try to forge output: a real socket whose path holds a newline and ANSI
 * escapes, served by a process whose name (comm) and program file name hold control
 * characters. Tables, proxy logs and debug lines show them escaped; JSON keeps them exact.
 */
import assert from 'node:assert/strict';
import { copyFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { escapeText } from '../../src/escape.js';
import { needCommand, needRoot, run, tempDir } from '../helpers/index.js';
import { CLI, secpolicy } from './cli.js';

const EVIL = 'a\nb\x1b[2Jc\x07';
// What a forged line would need: a raw newline inside a name, or a raw escape or bell byte.
// eslint-disable-next-line no-control-regex
const RAW = /\x1b|\x07/;

test('escapeText shows controls as \\xNN and leaves printable text alone', () => {
  assert.equal(escapeText(EVIL), 'a\\x0ab\\x1b[2Jc\\x07');
  assert.equal(escapeText('back\\slash'), 'back\\\\slash');
  assert.equal(escapeText('\u202eevil\u0085'), '\\u202eevil\\x85');
  assert.equal(escapeText('/run/ünïcode/ok.sock'), '/run/ünïcode/ok.sock');
});

/** python3, copied under a name with control characters, listening on `path` with comm set to EVIL. */
async function evilListener(t: import('node:test').TestContext, dir: string, path: string) {
  const program = `${dir}/py${EVIL}`;
  copyFileSync('/usr/bin/python3', program);
  const script = [
    'import ctypes, socket, sys',
    'ctypes.CDLL(None).prctl(15, sys.argv[2].encode(), 0, 0, 0)',
    's = socket.socket(socket.AF_UNIX)',
    's.bind(sys.argv[1])',
    'import os; os.chmod(sys.argv[1], 0o666)',
    's.listen(8)',
    "print('ready', flush=True)",
    'sys.stdin.read()',
  ].join('\n');
  const child = run(program, ['-c', script, path, EVIL]);
  t.after(() => {
    child.stdin!.end();
    return child.output();
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => String(d).includes('ready') && resolve());
    child.once('close', () => child.output().then((o) => reject(new Error(o.stderr))));
  });
  return { program, pid: child.pid! };
}

test(
  'audit and inspect: an evil socket path, program and process name are escaped in tables, exact in JSON',
  { timeout: 60_000, skip: needCommand('/usr/bin/python3') },
  async (t) => {
    const tmp = tempDir('secpolicy-escape-');
    t.after(() => tmp.cleanup());
    const path = tmp.path(`s${EVIL}.sock`);
    const { program, pid } = await evilListener(t, tmp.dir, path);

    const table = await secpolicy(['audit'], { env: { COLUMNS: '400' } });
    assert.equal(table.code, 0, table.stderr);
    assert.doesNotMatch(table.stdout, RAW);
    const row = table.stdout.split('\n').find((line) => line.includes(escapeText(path)));
    assert.ok(row, table.stdout);
    assert.ok(row.includes(`${pid} ${escapeText(EVIL)}`), row);
    const json = JSON.parse((await secpolicy(['audit', '--json'])).stdout) as Array<{
      path: string;
      holders: Array<{ comm?: string; program?: string }>;
    }>;
    const mine = json.find((r) => r.path === path);
    assert.ok(mine, 'JSON keeps the path exact');
    assert.equal(mine.holders[0]?.comm, EVIL.slice(0, 15), 'JSON keeps the process name exact');

    const inspected = await secpolicy(['inspect', path], { env: { COLUMNS: '400' } });
    assert.equal(inspected.code, 0, inspected.stderr);
    assert.doesNotMatch(inspected.stdout, RAW);
    assert.match(inspected.stdout, new RegExp(`^socket +${escapeRe(escapeText(path))}$`, 'm'));
    assert.match(inspected.stdout, new RegExp(`^program +${escapeRe(escapeText(program))}$`, 'm'));
    const exact = JSON.parse((await secpolicy(['inspect', '--json', path])).stdout) as { path: string; program: string };
    assert.equal(exact.path, path);
    assert.equal(exact.program, program);
  },
);

test(
  'proxy log lines and NODE_DEBUG decision lines escape paths and program names',
  { timeout: 60_000, skip: needRoot() || needCommand('/usr/bin/python3') },
  async (t) => {
    const tmp = tempDir('secpolicy-escape-');
    t.after(() => tmp.cleanup());
    writeFileSync(tmp.path('p.yaml'), 'program: /usr/bin/true\n');
    const listen = tmp.path(`p${EVIL}.sock`);
    const child = run(
      process.execPath,
      [CLI, 'proxy', '--listen', listen, '--to', tmp.path('t.sock'), '--policy', tmp.path('p.yaml'), '--mode', '0666'],
      {
        env: { ...process.env, NODE_DEBUG: 'secpolicy' },
      },
    );
    let stderr = '';
    const seen = (re: RegExp) =>
      new Promise<void>((resolve, reject) => {
        const check = () => re.test(stderr) && resolve();
        child.stderr!.on('data', (d: Buffer) => {
          stderr += d;
          check();
        });
        child.once('close', () => reject(new Error(stderr)));
        check();
      });
    await seen(/listening on/);
    // A client whose program path holds the control characters connects and is denied.
    const program = tmp.path(`py${EVIL}`);
    copyFileSync('/usr/bin/python3', program);
    await run(program, ['-c', 'import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.recv(1)', listen]).output();
    await seen(/SECPOLICY \d+: denied.*\n[^]*secpolicy proxy: denied.*\n|secpolicy proxy: denied.*\n[^]*SECPOLICY \d+: denied.*\n/);
    child.kill('SIGTERM');
    await child.output();
    assert.doesNotMatch(stderr, RAW);
    const lines = stderr.split('\n');
    assert.ok(
      lines.some((l) => l.startsWith('secpolicy proxy: listening on ') && l.includes(escapeText(listen))),
      stderr,
    );
    for (const head of [/^secpolicy proxy: denied /, /^SECPOLICY \d+: denied /]) {
      const line = lines.find((l) => head.test(l));
      assert.ok(line?.includes(escapeText(program)), `${head}: ${stderr}`);
    }
  },
);

function escapeRe(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
