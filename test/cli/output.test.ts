import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ErrorCode, SecpolicyError } from '../../src/index.js';
import { colorEnabled, colorsFor, displayWidth, errorLine, fields, formatMode, table, usageLine, wrap } from '../../src/cli/output.js';

test('wrap never makes a line wider than asked and keeps every character', () => {
  fc.assert(
    fc.property(
      fc.string({ maxLength: 300 }).map((s) => s.replace(/\n/g, ' ')),
      fc.integer({ min: 1, max: 100 }),
      (text, width) => {
        const lines = wrap(text, width);
        assert.ok(lines.every((l) => l.length <= width));
        assert.equal(lines.join('').replace(/ /g, ''), text.replace(/ /g, ''));
      },
    ),
  );
});

test('table fits 80 columns by wrapping the flexible column, and colour never shifts alignment', () => {
  const rows = [
    {
      sev: 'high',
      code: 'INSECURE_DIRECTORY',
      msg: '/tmp/some/long/directory is writable by every user (mode 0777, no sticky bit): the socket can be replaced',
    },
    { sev: 'info', code: 'GROUP_WRITABLE', msg: 'short' },
  ];
  const columns = [
    {
      header: 'SEVERITY',
      value: (r: (typeof rows)[0]) => r.sev,
      style: (t: string, _r: unknown, c: ReturnType<typeof colorsFor>) => c.red(t),
    },
    { header: 'FINDING', value: (r: (typeof rows)[0]) => r.code },
    { header: 'MESSAGE', value: (r: (typeof rows)[0]) => r.msg },
  ];
  const plain = table(columns, rows);
  assert.ok(
    plain.split('\n').every((l) => l.length <= 80),
    plain,
  );
  assert.equal(plain.split('\n')[0], 'SEVERITY  FINDING             MESSAGE');
  assert.ok(plain.split('\n').length > 4, 'the long message wrapped');
  const coloured = table(columns, rows, { colors: colorsFor({ write: () => true, isTTY: true }) });
  // eslint-disable-next-line no-control-regex
  assert.equal(coloured.replace(/\x1b\[\d+m/g, ''), plain);
  assert.equal(
    table(columns, rows, { width: 40 })
      .split('\n')
      .every((l) => l.length <= 40),
    true,
  );
});

test('fields align values and leave out undefined ones', () => {
  const text = fields([
    ['pid', 12],
    ['program', undefined],
    ['file mode', formatMode(0o100660)],
  ]);
  assert.equal(text, 'pid        12\nfile mode  0660\n');
});

test('colour is decided by NO_COLOR, FORCE_COLOR, the terminal and TERM', () => {
  const tty = { write: () => true, isTTY: true };
  const pipe = { write: () => true, isTTY: false };
  assert.equal(colorEnabled(tty, {}), true);
  assert.equal(colorEnabled(pipe, {}), false);
  assert.equal(colorEnabled(pipe, { CI: 'true' }), false, 'CI alone does not colour piped output');
  assert.equal(colorEnabled(tty, { NO_COLOR: '1' }), false);
  assert.equal(colorEnabled(pipe, { FORCE_COLOR: '1' }), true);
  assert.equal(colorEnabled(tty, { FORCE_COLOR: '0' }), true);
  assert.equal(colorEnabled(pipe, { FORCE_COLOR: '0' }), false);
  assert.equal(colorEnabled(tty, { NO_COLOR: '1', FORCE_COLOR: '1' }), false);
  assert.equal(colorEnabled(tty, { TERM: 'dumb' }), false);
});

test('errors and usage errors print as one line carrying the code', () => {
  const cause = Object.assign(new Error('connect ENOENT /x'), { code: 'ENOENT' });
  assert.equal(
    errorLine(new SecpolicyError(ErrorCode.CONNECT, 'cannot connect to /x: ENOENT', { cause })),
    'secpolicy: ERR_SECPOLICY_CONNECT: cannot connect to /x: ENOENT\n',
  );
  assert.equal(
    errorLine(new SecpolicyError(ErrorCode.POLICY_FILE, 'cannot read', { cause: new Error('EISDIR: illegal operation') })),
    'secpolicy: ERR_SECPOLICY_POLICY_FILE: cannot read: EISDIR: illegal operation\n',
  );
  // A newline in a message (a path from the system) cannot start a forged line.
  assert.equal(errorLine(new Error('two\nlines')), 'secpolicy: ERR_SECPOLICY_NATIVE: two\\x0alines\n');
  assert.equal(usageLine("error: unknown option '--x'\n"), "secpolicy: ERR_SECPOLICY_INVALID_ARG: unknown option '--x' (see --help)\n");
});

test('wrap measures display width and breaks a path only after a slash; table keeps a whole name in a keep column', () => {
  assert.deepEqual(wrap('/run/user/1000/app.sock: mode 0666', 16), ['/run/user/1000/', 'app.sock: mode', '0666']);
  // Two columns per wide character: four fit in 8.
  assert.deepEqual(wrap('日本語日本語 x', 8), ['日本語日', '本語 x']);
  assert.equal(displayWidth('日本/ab'), 7);
  // A code breaks after an underscore rather than mid-word.
  assert.deepEqual(wrap('ROOT_WORLD_ACCESSIBLE', 12), ['ROOT_WORLD_', 'ACCESSIBLE']);
  const name = 'a-name-of-forty-characters-to-keep-whole.sock';
  const rows = [{ path: `/tmp/dir/${name}`, holder: '1234 python3' }];
  const columns = [
    { header: 'PATH', value: (r: (typeof rows)[0]) => r.path, flex: true, keep: true },
    { header: 'HOLDER', value: (r: (typeof rows)[0]) => r.holder },
  ];
  const narrow = table(columns, rows, { width: 40 });
  assert.ok(
    narrow.split('\n').some((l) => l.includes(name)),
    narrow,
  );
  assert.ok(!narrow.split('\n').some((l) => l.includes('/tmp/dir/a-')), 'the directory breaks after its slash, the name does not');
  const aligned = table(
    [
      { header: 'NAME', value: (r: { n: string }) => r.n },
      { header: 'END', value: () => 'x' },
    ],
    [{ n: '套接字' }, { n: 'abc' }],
  );
  const [header, wide, ascii] = aligned.split('\n');
  assert.equal(displayWidth(wide!.slice(0, wide!.indexOf('x'))), header!.indexOf('END'));
  assert.equal(ascii!.indexOf('x'), header!.indexOf('END'));
});
