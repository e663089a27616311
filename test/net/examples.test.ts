import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chownSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { needCommand, needRoot, run, tempDir } from '../helpers/index.js';
import { NOBODY, DAEMON } from './fixtures.js';

const example = (name: string) => fileURLToPath(new URL(`../../examples/${name}.js`, import.meta.url));

test(
  'examples: http-server answers the client example and turns another user away',
  { timeout: 60_000, skip: needRoot() || needCommand('curl') },
  async (t) => {
    const tmp = tempDir('secpolicy-example-');
    const path = tmp.path('run/api.sock');
    const server = run(process.execPath, [example('http-server'), path]);
    t.after(async () => {
      server.kill();
      await server.output();
      tmp.cleanup();
    });
    const [ready] = (await once(server.stdout!, 'data')) as [Buffer];
    assert.equal(ready.toString().trim(), `listening on ${path}`);

    const client = await run(process.execPath, [example('client'), path]).output();
    assert.equal(client.code, 0, client.stderr);
    assert.match(client.stdout, /^server verified: pid \d+, uid 0 \(root\)/);
    const body = JSON.parse(client.stdout.split('\n')[1]!.replace(/^200 /, ''));
    assert.equal(body.uid, 0);
    assert.equal(body.socketPath, path);

    const other = await run('curl', ['-sS', '--unix-socket', path, 'http://localhost/whoami'], { as: NOBODY }).output();
    assert.equal(other.stdout, '');
    assert.notEqual(other.code, 0);
  },
);

test('examples: the client refuses a server squatting the path as another user', { timeout: 60_000, skip: needRoot() }, async (t) => {
  const tmp = tempDir('secpolicy-example-');
  mkdirSync(tmp.path('run'), { mode: 0o755 });
  chownSync(tmp.path('run'), DAEMON.uid, DAEMON.gid);
  const path = tmp.path('run/api.sock');
  const squatter = run(
    process.execPath,
    ['-e', `require('net').createServer((s) => s.end()).listen(process.argv[1], () => console.log('ready'))`, path],
    { as: DAEMON },
  );
  t.after(async () => {
    squatter.kill();
    await squatter.output();
    tmp.cleanup();
  });
  await once(squatter.stdout!, 'data');
  const client = await run(process.execPath, [example('client'), path]).output();
  assert.equal(client.code, 1);
  assert.match(client.stderr, /refusing to talk to .*peer uid 1 is not 0/);
});

const root = fileURLToPath(new URL('../../../', import.meta.url));

test(
  'examples: npm start (the README first command, build skipped) runs the self-demo and leaves nothing behind',
  { timeout: 60_000, skip: needRoot() || needCommand('npm', 'setpriv') },
  async () => {
    const before = new Set(readdirSync(tmpdir()).filter((n) => n.startsWith('secpolicy-basic-')));
    // --ignore-scripts skips only prestart (the build, already done by `npm test`), not start itself.
    const r = await run('npm', ['start', '--ignore-scripts', '--silent'], { cwd: root }).output();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^ALLOWED pid \d+ uid 0 \(root\)/m);
    assert.match(r.stdout, /^DENIED {2}pid \d+ uid 65534 .*result 0x3c \[UID GID USER GROUP\]$/m);
    assert.match(r.stdout, /^demo: the expected decisions$/m);
    assert.doesNotMatch(r.stdout, /\.sock|listening on|UNIX-CONNECT/, 'no line points at the socket the demo deletes');
    const left = readdirSync(tmpdir()).filter((n) => n.startsWith('secpolicy-basic-') && !before.has(n));
    assert.deepEqual(left, [], 'the temporary socket directory is removed');
  },
);

test(
  'examples: basic-server --serve --uid derives the gid from that user, creates the socket with its mode, removes it on SIGTERM',
  { timeout: 60_000, skip: needRoot() || needCommand('socat') },
  async (t) => {
    const tmp = tempDir('secpolicy-example-');
    t.after(() => tmp.cleanup());
    const path = tmp.path('basic.sock');
    // daemon: uid 1, primary group 1 (the test's DAEMON identity).
    const server = run(process.execPath, [
      example('basic-server'),
      '--serve',
      '--path',
      path,
      '--uid',
      '1',
      '--perms',
      '0660',
      '--program',
      '/usr/bin/socat',
    ]);
    t.after(() => {
      if (server.exitCode === null) server.kill('SIGKILL');
    });
    let out = '';
    await new Promise<void>((resolve, reject) => {
      server.stdout!.on('data', (d: Buffer) => {
        out += d;
        if (out.includes('serving;')) resolve();
      });
      server.once('close', () => server.output().then((o) => reject(new Error(o.stdout + o.stderr))));
    });
    assert.match(out, /"uid":1,"gid":1,/);
    assert.equal(statSync(path).mode & 0o777, 0o660);
    // daemon may write the root:root 0660 file through the supplementary group 0; its primary gid stays 1.
    const allowed = await run('socat', ['-t', '2', '-', `UNIX-CONNECT:${path}`], { as: { ...DAEMON, groups: [0] } }).output();
    assert.match(allowed.stdout, /^hello daemon, you are verified/);
    server.kill('SIGTERM');
    const end = await server.output();
    assert.equal(end.code, 0, end.stderr);
    assert.equal(existsSync(path), false, 'the socket file is removed on SIGTERM');
  },
);
