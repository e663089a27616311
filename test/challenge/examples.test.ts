/** The challenge examples run as documented: one command per side, real processes. */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { run, tempDir } from '../helpers/index.js';
import { listening, reap } from './peers.js';

const example = (name: string) => fileURLToPath(new URL(`../../examples/${name}.js`, import.meta.url));
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

test('challenge-server and challenge-client (the C library example, twin)', async (t) => {
  const dir = tempDir('secpolicy-example-');
  t.after(dir.cleanup);
  const server = run(process.execPath, [example('challenge-server'), dir.path('s')]);
  t.after(() => reap(server));
  await listening(server);
  const client = await run(process.execPath, [example('challenge-client'), dir.path('s'), 'hi']).output();
  assert.equal(client.code, 0, client.stderr);
  assert.equal(client.stdout, 'welcome\nhi\n');
  server.kill('SIGTERM');
  assert.match((await server.output()).stdout, new RegExp(`^listening on .*\\nallowed pid=\\d+ uid=${process.getuid!()}\n$`));
});

test('secret-server and secret-client with a key from secpolicy keygen', async (t) => {
  const dir = tempDir('secpolicy-example-');
  t.after(dir.cleanup);
  const key = dir.path('key');
  assert.equal((await run(process.execPath, [CLI, 'keygen', key]).output()).code, 0);
  const server = run(process.execPath, [example('secret-server'), dir.path('s'), key]);
  t.after(() => reap(server));
  await listening(server);
  const client = await run(process.execPath, [example('secret-client'), dir.path('s'), key, 'ping']).output();
  assert.equal(client.code, 0, client.stderr);
  assert.equal(client.stdout, 'ping\n');
  // A client with another key is turned away, and says so.
  const other = dir.path('other');
  assert.equal((await run(process.execPath, [CLI, 'keygen', other]).output()).code, 0);
  const refused = await run(process.execPath, [example('secret-client'), dir.path('s'), other]).output();
  assert.equal(refused.code, 1);
  server.kill('SIGTERM');
  assert.match((await server.output()).stdout, /allowed pid=\d+.*\ndenied pid=\d+: the challenge response did not verify\n/);
});
