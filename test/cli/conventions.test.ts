import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { needCommand, run, tempDir } from '../helpers/index.js';
import { CLI, fits, hasAnsi, listener, secpolicy } from './cli.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

/** Subcommand names listed by `secpolicy --help` (so commands added later are covered too). */
function commandsIn(help: string): string[] {
  const section = help.split(/^Commands:$/m)[1] ?? '';
  return [...section.matchAll(/^ {2}(\w[\w-]*)/gm)].map((m) => m[1]!).filter((name) => name !== 'help');
}

test('--version prints the package version, exit 0', async () => {
  for (const flag of ['--version', '-V']) {
    const r = await secpolicy([flag]);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `${pkg.version}\n`);
  }
});

test('--help works for the program and every command, within 80 columns', async () => {
  const top = await secpolicy(['--help']);
  assert.equal(top.code, 0);
  const names = commandsIn(top.stdout);
  for (const expected of ['inspect', 'check']) assert.ok(names.includes(expected), `${expected} in ${names.join(', ')}`);
  assert.ok(fits(top.stdout), top.stdout);
  for (const name of names) {
    const r = await secpolicy([name, '--help']);
    assert.equal(r.code, 0, `${name} --help: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^Usage: secpolicy ${name} `), name);
    assert.match(r.stdout, /--help/);
    assert.ok(fits(r.stdout), r.stdout);
    assert.equal(r.stderr, '');
  }
});

test('usage errors are one coded line on stderr, exit 2', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['--bogus'], /unknown option '--bogus'/],
    [['inspect'], /missing required argument 'socket-path'/],
    [['inspect', 'a', 'b'], /too many arguments/],
    [['check', '/x.sock'], /required option '--policy <file>' not specified/],
    [['check', '--policy', 'p.yaml', '--timeout', 'soon', '/x.sock'], /'--timeout <ms>' argument 'soon' is invalid/],
  ];
  for (const [args, message] of cases) {
    const r = await secpolicy(args);
    assert.equal(r.code, 2, args.join(' '));
    assert.equal(r.stdout, '', args.join(' '));
    assert.match(r.stderr, /^secpolicy: ERR_SECPOLICY_INVALID_ARG: [^\n]+\n$/, r.stderr);
    assert.match(r.stderr, message);
  }
  const none = await secpolicy([]);
  assert.equal(none.code, 2, 'no command is a usage error');
  assert.match(none.stderr, /^Usage: secpolicy/);
});

test('runtime errors are one coded line on stderr, exit 2', async (t) => {
  const tmp = tempDir('secpolicy-conv-');
  t.after(() => tmp.cleanup());
  const r = await secpolicy(['inspect', tmp.path('gone.sock')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^secpolicy: ERR_SECPOLICY_CONNECT: [^\n]+\n$/);
});

test('colour: never when piped, never with NO_COLOR, only when forced or on a terminal', { skip: needCommand('script') }, async (t) => {
  const tmp = tempDir('secpolicy-conv-');
  t.after(() => tmp.cleanup());
  const sock = tmp.path('s.sock');
  const server = await listener(sock);
  t.after(() => server.close());
  const policy = tmp.path('p.yaml');
  (await import('node:fs')).writeFileSync(policy, `uid: ${process.getuid!() + 1}\n`);
  const args = ['check', '--policy', policy, sock];

  const piped = await secpolicy(args);
  assert.equal(piped.code, 1);
  assert.equal(hasAnsi(piped.stdout), false, 'piped: no colour');
  const forced = await secpolicy(args, { env: { FORCE_COLOR: '1' } });
  assert.equal(hasAnsi(forced.stdout), true, 'FORCE_COLOR=1: colour');
  const noColor = await secpolicy(args, { env: { FORCE_COLOR: '1', NO_COLOR: '1' } });
  assert.equal(hasAnsi(noColor.stdout), false, 'NO_COLOR wins over FORCE_COLOR');

  // On a real terminal (script(1) gives the command a pty): colour, unless NO_COLOR is set.
  const onTty = async (env: Record<string, string>) => {
    const line = [process.execPath, CLI, ...args].map((a) => `'${a}'`).join(' ');
    const base: NodeJS.ProcessEnv = { ...process.env, TERM: 'xterm' };
    delete base.NO_COLOR;
    delete base.FORCE_COLOR;
    return run('script', ['-qec', line, '/dev/null'], { env: { ...base, ...env } }).output();
  };
  const tty = await onTty({});
  assert.equal(tty.code, 1, tty.stdout + tty.stderr);
  assert.equal(hasAnsi(tty.stdout), true, `a terminal gets colour: ${JSON.stringify(tty.stdout)}`);
  const ttyNoColor = await onTty({ NO_COLOR: '1' });
  assert.equal(ttyNoColor.code, 1);
  assert.equal(hasAnsi(ttyNoColor.stdout), false, 'NO_COLOR on a terminal: no colour');
  assert.match(ttyNoColor.stdout, /denied/);
});
