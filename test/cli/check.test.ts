import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chownSync, mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { Policy, createServer, writeKeyFile } from '../../src/index.js';
import { closeServer, needRoot, tempDir } from '../helpers/index.js';
import { fits, hasAnsi, listener, secpolicy } from './cli.js';

const NOBODY_IN_ADM = { uid: 65534, gid: 65534, groups: [4] };
const python = realpathSync('/usr/bin/python3');

/** A temp dir with a subdirectory nobody may bind in, and a way to write policy files. */
function setup(t: { after: (fn: () => void) => void }) {
  const tmp = tempDir('secpolicy-check-');
  t.after(() => tmp.cleanup());
  mkdirSync(tmp.path('run'));
  chownSync(tmp.path('run'), 65534, 65534);
  return {
    sock: tmp.path('run/s.sock'),
    policy(name: string, text: string): string {
      writeFileSync(tmp.path(name), text);
      return tmp.path(name);
    },
  };
}

test('check exits 0 when the server passes and 1 when it fails, with the failures', { skip: needRoot() }, async (t) => {
  const s = setup(t);
  const server = await listener(s.sock, { as: NOBODY_IN_ADM, mode: 0o660 });
  t.after(() => server.close());
  const pass = s.policy(
    'pass.yaml',
    `# nobody in adm running python\nanyOf:\n  - uid: 0\n  - memberOf: adm\n    program: ${python}\nperms: "0660"\n`,
  );
  const allowed = await secpolicy(['check', '--policy', pass, s.sock]);
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.equal(allowed.stdout, `allowed: ${s.sock}\nserver  pid ${server.pid}, uid 65534 (nobody), program ${python}\n`);

  const fail = s.policy('fail.yaml', 'uid: 0\nprogram: /usr/bin/socat\n');
  const denied = await secpolicy(['check', '--policy', fail, s.sock]);
  assert.equal(denied.code, 1, denied.stderr);
  assert.equal(denied.stderr, '');
  assert.match(denied.stdout, /^denied: .*s\.sock\n/);
  assert.match(denied.stdout, /^failed +PROGRAM, UID$/m);
  assert.match(denied.stdout, /^uid +peer uid 65534 is not 0$/m);
  assert.match(denied.stdout, /^program +peer program .*python3.* is not the file at/m);
  assert.ok(fits(denied.stdout), denied.stdout);
  assert.equal(hasAnsi(denied.stdout), false);

  const json = await secpolicy(['check', '--json', '--policy', fail, s.sock]);
  assert.equal(json.code, 1, json.stderr);
  assert.equal(json.stderr, '', 'a denial is not a crash');
  const report = JSON.parse(json.stdout);
  assert.equal(report.allowed, false);
  assert.equal(report.result, 2 | 4);
  assert.deepEqual(report.flags, ['PROGRAM', 'UID']);
  assert.deepEqual(
    report.failures.map((f: { rule: string }) => f.rule),
    ['uid', 'program'],
  );
  assert.equal(report.server.pid, server.pid);
  assert.equal(report.server.uid, 65534);
  assert.deepEqual(report.server.groups, [4], 'read before the denied connection was closed');

  const okJson = JSON.parse((await secpolicy(['check', '--json', '--policy', pass, s.sock])).stdout);
  assert.deepEqual(
    { allowed: okJson.allowed, result: okJson.result, failures: okJson.failures },
    { allowed: true, result: 0, failures: [] },
  );
  assert.deepEqual(okJson.server.groups, [4]);
});

test('check verifies the socket file mode the client sees', { skip: needRoot() }, async (t) => {
  const s = setup(t);
  const server = await listener(s.sock, { as: NOBODY_IN_ADM, mode: 0o666 });
  t.after(() => server.close());
  const r = await secpolicy(['check', '--policy', s.policy('p.yaml', 'perms: 0660\n'), s.sock]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /^perms +socket file mode 0666 is not 0660$/m);
});

test('check: a bad policy file, a missing socket and a missing --policy exit 2 with one coded line', async (t) => {
  const s = setup(t);
  const server = await listener(`@secpolicy-check-${process.pid}-${Date.now()}`, { program: 'node' });
  t.after(() => server.close());
  const bad = s.policy('bad.yaml', '# comment\nanyOf:\n  - uid: 0\n  - memberOf: [adm, -1]\n');
  const r1 = await secpolicy(['check', '--policy', bad, s.sock]);
  assert.equal(r1.code, 2);
  assert.equal(r1.stdout, '');
  assert.equal(
    r1.stderr,
    `secpolicy: ERR_SECPOLICY_POLICY_FILE: ${bad}: anyOf[1].memberOf[1] (line 4): must be a group name or gid. Received number -1\n`,
  );
  const r2 = await secpolicy(['check', '--policy', s.policy('ok.yaml', 'uid: 0\n'), s.sock]);
  assert.equal(r2.code, 2);
  assert.match(r2.stderr, /^secpolicy: ERR_SECPOLICY_CONNECT: cannot connect to .*s\.sock: ENOENT\n$/);
  const r3 = await secpolicy(['check', s.sock]);
  assert.equal(r3.code, 2);
  assert.match(r3.stderr, /^secpolicy: ERR_SECPOLICY_INVALID_ARG: required option '--policy <file>' not specified/);
  assert.equal(r3.stderr.split('\n').length, 2, 'one line');
  const r4 = await secpolicy(['check', '--policy', s.policy('empty.yaml', ''), s.sock]);
  assert.equal(r4.code, 2);
  assert.match(r4.stderr, /^secpolicy: ERR_SECPOLICY_POLICY_FILE: .*empty/);
});

test('check accepts @name for an abstract socket (bound with its exact length) and a relative policy path', async (t) => {
  const s = setup(t);
  const name = `@secpolicy-check-${process.pid}-${Date.now()}`;
  const server = await listener(name, { program: 'python' });
  t.after(() => server.close());
  s.policy('me.json', JSON.stringify({ uid: process.getuid!() }));
  const r = await secpolicy(['check', '--policy', 'me.json', name], { cwd: s.sock.replace(/\/run\/s\.sock$/, '') });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^allowed: ${name}\nserver +pid ${server.pid}, `));
  // perms never passes for an abstract socket (no file, no permissions).
  s.policy('perms.yaml', 'perms: "0600"');
  const denied = await secpolicy(['check', '--policy', 'perms.yaml', name], { cwd: s.sock.replace(/\/run\/s\.sock$/, '') });
  assert.equal(denied.code, 1, denied.stderr);
  assert.match(denied.stdout, /abstract sockets have no file\s+permissions/);
});

test('check runs the shared-secret challenge of a policy file, with the key file beside it', async (t) => {
  const tmp = tempDir('secpolicy-check-secret-');
  t.after(() => tmp.cleanup());
  await writeKeyFile(tmp.path('key'));
  await writeKeyFile(tmp.path('other-key'));
  const server = createServer({ policy: new Policy().sharedSecret({ keyFile: tmp.path('key') }) }, (socket) => socket.end());
  server.on('denied', () => {});
  server.listen(tmp.path('s.sock'));
  await once(server, 'listening');
  t.after(() => closeServer(server));
  writeFileSync(tmp.path('good.yaml'), '# the key sits beside this file\nsharedSecret:\n  keyFile: key\n');
  writeFileSync(tmp.path('bad.yaml'), 'sharedSecret: { keyFile: other-key }\n');
  // Run from elsewhere: the relative keyFile resolves against the policy file's directory.
  const good = await secpolicy(['check', '--policy', tmp.path('good.yaml'), tmp.path('s.sock')], { cwd: '/' });
  assert.equal(good.code, 0, good.stdout + good.stderr);
  assert.match(good.stdout, /^allowed: /);
  const bad = await secpolicy(['check', '--json', '--policy', tmp.path('bad.yaml'), tmp.path('s.sock')], { cwd: '/' });
  assert.equal(bad.code, 1, bad.stdout + bad.stderr);
  assert.deepEqual(JSON.parse(bad.stdout).flags, ['CHALLENGE']);
});
