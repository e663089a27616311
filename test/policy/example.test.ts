/** examples/basic-server: its self-demo decides as documented, and --serve answers socat. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { hasCommand, isRoot, needCommand, run } from '../helpers/index.js';

const example = fileURLToPath(new URL('../../examples/basic-server.js', import.meta.url));

test('the self-demo allows this user, denies nobody, and exits 0', async () => {
  const { code, stdout, stderr } = await run(process.execPath, [example]).output();
  assert.equal(code, 0, stdout + stderr);
  // The demo's socket is gone when it ends: no line points at it.
  assert.match(stdout, /^self-demo on a temporary socket \(mode 0666\), removed at the end$/m);
  assert.doesNotMatch(stdout, /\.sock\b/);
  assert.match(stdout, /^ALLOWED pid \d+ uid \d+/m);
  assert.match(stdout, /hello \S+, you are verified/);
  if (isRoot && hasCommand('setpriv')) {
    assert.match(stdout, /^DENIED {2}pid \d+ uid 65534 \(nobody\).*result 0x3c \[UID GID USER GROUP\]$/m);
    assert.match(stdout, /uid: peer uid 65534 is not 0/);
  }
  assert.match(stdout, /demo: the expected decisions/);
});

test(
  '--serve keeps serving: socat gets the greeting; Ctrl-C stops it and removes the socket',
  { skip: needCommand('socat') },
  async (t) => {
    const server = run(process.execPath, [example, '--serve']);
    t.after(() => server.kill('SIGKILL'));
    const lines = createInterface({ input: server.stdout! });
    let path: string | undefined;
    for await (const line of lines) {
      const m = /^connect with: {2}socat - UNIX-CONNECT:(\S+)$/.exec(line);
      if (m) {
        path = m[1]!;
        break;
      }
    }
    assert.ok(path, 'the server printed how to connect');
    const client = run('socat', ['-', `UNIX-CONNECT:${path}`]);
    client.stdin!.end();
    const reply = await client.output();
    assert.match(reply.stdout, /you are verified/);
    server.kill('SIGINT');
    const [code] = await once(server, 'exit');
    assert.equal(code, 0);
    assert.equal(existsSync(path), false);
  },
);

test('a bad flag fails with ERR_SECPOLICY_INVALID_ARG naming the rule, exit 2', async () => {
  const { code, stderr } = await run(process.execPath, [example, '--perms', '1777']).output();
  assert.equal(code, 2);
  assert.match(stderr, /ERR_SECPOLICY_INVALID_ARG: The "perms" argument/);
});
