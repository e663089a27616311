/** `secpolicy gateway` flags it shares with `proxy`: --owner, --group, --allow-insecure-directory, and the warning about --to. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { needRoot, tempDir } from '../helpers/index.js';
import { startGateway } from '../helpers/dockerd.js';
import { secpolicy } from './cli.js';

const POLICY = 'rules:\n  - { name: root, who: { uid: 0 }, allow: ["GET /**"] }\n';

test(
  'secpolicy gateway --owner and --group give its socket file an owner and group; an unknown name stops it before it listens',
  { skip: needRoot() },
  async (t) => {
    const tmp = tempDir('secpolicy-gateway-flags-');
    t.after(() => tmp.cleanup());
    writeFileSync(tmp.path('p.yaml'), POLICY);
    const up = createServer();
    up.listen(tmp.path('up.sock'));
    await once(up, 'listening');
    t.after(() => up.close());
    const gw = await startGateway({
      socket: tmp.path('gw.sock'),
      target: tmp.path('up.sock'),
      policy: tmp.path('p.yaml'),
      extra: ['--owner', 'nobody', '--group', '12345', '--mode', '0660'],
    });
    t.after(() => gw.stop());
    // The socket appears at the bind; its owner is set before the "listening" line.
    await waitFor(() => /listening on/.test(gw.output()));
    const st = statSync(tmp.path('gw.sock'));
    assert.equal(st.uid, Number(/^nobody:[^:]*:(\d+):/m.exec(readFileSync('/etc/passwd', 'utf8'))![1]));
    assert.equal(st.gid, 12345);
    assert.equal(st.mode & 0o777, 0o660);
    assert.doesNotMatch(gw.output(), /warning/, 'the target listens: no warning');

    const bad = await secpolicy([
      'gateway',
      '--listen',
      tmp.path('x.sock'),
      '--to',
      tmp.path('up.sock'),
      '--policy',
      tmp.path('p.yaml'),
      '--owner',
      'no-such-user-here',
    ]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^secpolicy: ERR_SECPOLICY_INVALID_ARG: --owner no-such-user-here: no such user\n$/);
    assert.throws(() => statSync(tmp.path('x.sock')), /ENOENT/, 'nothing was created');
  },
);

test(
  'secpolicy gateway refuses a directory others can write to unless --allow-insecure-directory, and warns when --to is no socket',
  { skip: needRoot() },
  async (t) => {
    const tmp = tempDir('secpolicy-gateway-flags-');
    t.after(() => tmp.cleanup());
    writeFileSync(tmp.path('p.yaml'), POLICY);
    mkdirSync(tmp.path('open'));
    chmodSync(tmp.path('open'), 0o777); // no sticky bit: any user could replace the socket
    writeFileSync(tmp.path('plain-file'), '');

    const refused = await secpolicy([
      'gateway',
      '--listen',
      tmp.path('open/gw.sock'),
      '--to',
      tmp.path('missing.sock'),
      '--policy',
      tmp.path('p.yaml'),
    ]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /ERR_SECPOLICY_UNSAFE_PATH: .*writable by every user/);

    const gw = await startGateway({
      socket: tmp.path('open/gw.sock'),
      target: tmp.path('missing.sock'),
      policy: tmp.path('p.yaml'),
      extra: ['--allow-insecure-directory'],
    });
    t.after(() => gw.stop());
    // The warning follows the "listening" line; both are written before the socket appears or right after it.
    await waitFor(() => /warning/.test(gw.output()));
    assert.match(
      gw.output(),
      new RegExp(
        `secpolicy gateway: warning: target ${tmp.path('missing.sock')} does not exist \\(yet\\); allowed requests fail until it listens`,
      ),
    );

    const gw2 = await startGateway({ socket: tmp.path('gw2.sock'), target: tmp.path('plain-file'), policy: tmp.path('p.yaml') });
    t.after(() => gw2.stop());
    await waitFor(() => /warning/.test(gw2.output()));
    assert.match(gw2.output(), /warning: target .*plain-file is not a socket/);
  },
);

/** Resolves once `check()` holds, checking as output arrives (bounded by the test's own timeout). */
async function waitFor(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((r) => setTimeout(r, 10));
}
