import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chownSync, mkdirSync } from 'node:fs';
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
