import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { ErrorCode, Policy, loadPolicy, parsePolicy, resultNames, type Rule } from '../../src/index.js';
import { connection, nodePeer, pythonPeer, NOBODY } from '../helpers/connection.js';
import { needCommand, needRoot, sharedDist, tempDir } from '../helpers/index.js';
import { pathToFileURL } from 'node:url';

/** A rule as comparable data: name, flag and expectation, recursively through combinators. */
const shape = (rules: readonly Rule[]) => rules.map((r) => ({ name: r.name, flag: r.flag, expected: r.expected }));

/** Asserts that parsing fails with ERR_SECPOLICY_POLICY_FILE naming `field` on `line`. */
function rejects(text: string | object, field: string, line: number | undefined, pattern?: RegExp): void {
  assert.throws(
    () => parsePolicy(text),
    (e: Error & { code?: string; field?: string; line?: number }) => {
      assert.equal(e.code, ErrorCode.POLICY_FILE, e.message);
      assert.equal(e.field || 'document', field, e.message);
      assert.equal(e.line, line, e.message);
      const where = line === undefined ? `${field}: ` : `${field} (line ${line}): `;
      assert.ok(e.message.startsWith(where), `${e.message} should start with ${where}`);
      if (pattern) assert.match(e.message, pattern);
      return true;
    },
  );
}

test('every rule key makes the same rules as the builder', () => {
  const cases: Array<[string, Policy]> = [
    ['uid: 0', new Policy().uid(0)],
    ['uid: [0, 1000]', new Policy().uid([0, 1000])],
    ['gid: 4', new Policy().gid(4)],
    ['gid: [4, 24]', new Policy().gid([4, 24])],
    ['user: root', new Policy().user('root')],
    ['user: [root, daemon]', new Policy().user(['root', 'daemon'])],
    ['group: adm', new Policy().group('adm')],
    ['memberOf: docker', new Policy().memberOf('docker')],
    ['memberOf: [adm, 24]', new Policy().memberOf(['adm', 24])],
    ['program: /usr/bin/socat', new Policy().program('/usr/bin/socat')],
    ['program: [/usr/bin/socat, /usr/bin/curl]', new Policy().program(['/usr/bin/socat', '/usr/bin/curl'])],
    ['perms: 432', new Policy().perms(0o660)],
    ['perms: "0660"', new Policy().perms(0o660)],
    ['perms: "660"', new Policy().perms(0o660)],
    ['perms: "0o600"', new Policy().perms(0o600)],
    // YAML 1.2 reads 0660 as decimal; a policy file means chmod's octal.
    ['perms: 0660', new Policy().perms(0o660)],
    ['perms: 0600', new Policy().perms(0o600)],
    ['creds: "system_u:system_r:sshd_t:s0"', new Policy().creds('system_u:system_r:sshd_t:s0')],
    ['label: unconfined', new Policy().label('unconfined')],
    ['uid: 0\ngroup: adm', new Policy().uid(0).group('adm')],
    [`programDigest: ${'Ab'.repeat(32)}`, new Policy().programDigest('Ab'.repeat(32))],
    // Unquoted hex that YAML would read as numbers keeps the digits as written.
    [
      `programDigest: [${'0'.repeat(64)}, ${'f'.repeat(64)}, ${'1'.repeat(10)}e${'2'.repeat(53)}]`,
      new Policy().programDigest(['0'.repeat(64), 'f'.repeat(64), `${'1'.repeat(10)}e${'2'.repeat(53)}`]),
    ],
    ['container: true', new Policy().container()],
    [
      'container: { runtime: [docker, podman], idPrefix: 3f2a }',
      new Policy().container({ runtime: ['docker', 'podman'], idPrefix: '3f2a' }),
    ],
    ['container:\n  id: abc', new Policy().container({ id: 'abc' })],
    ['host: true', new Policy().host()],
    ['sameNamespace: net', new Policy().sameNamespace('net')],
    ['sameNamespace: [pid, mnt, user]', new Policy().sameNamespace(['pid', 'mnt', 'user'])],
  ];
  for (const [text, builder] of cases) {
    assert.deepEqual(shape(parsePolicy(text).rules), shape(builder.rules), text);
  }
});

test('allOf, anyOf, not, lists of rule objects and comments combine like the builder', () => {
  const text = `
# root, or a member of group docker running the docker CLI
anyOf:
  - uid: 0            # root
  - memberOf: docker
    program: /usr/bin/docker
`;
  const builder = new Policy().anyOf(new Policy().uid(0), new Policy().memberOf('docker').program('/usr/bin/docker'));
  assert.deepEqual(shape(parsePolicy(text).rules), shape(builder.rules));
  assert.deepEqual(
    shape(parsePolicy('allOf:\n  - uid: 0\n  - gid: 0\nnot:\n  user: daemon').rules),
    shape(new Policy().allOf(new Policy().uid(0), new Policy().gid(0)).not(new Policy().user('daemon')).rules),
  );
  // A top-level list means any of its rule objects; so does a list where one rule object is expected.
  assert.deepEqual(
    shape(parsePolicy('- uid: 0\n- gid: 4').rules),
    shape(new Policy().anyOf(new Policy().uid(0), new Policy().gid(4)).rules),
  );
  assert.deepEqual(
    shape(parsePolicy('not: [{uid: 0}, {uid: 1}]').rules),
    shape(new Policy().not(new Policy().anyOf(new Policy().uid(0), new Policy().uid(1))).rules),
  );
});

test('version, strict, sharedSecret keyFile and object input', () => {
  assert.equal(parsePolicy('version: 1\nuid: 0').rules.length, 1);
  assert.equal(parsePolicy('strict: true\nprogram: /usr/bin/socat').strict, true);
  assert.equal(parsePolicy('strict: false\nuid: 0').strict, false);
  const secret = parsePolicy('sharedSecret: { keyFile: /etc/app/key }\nuid: 0');
  assert.equal(secret.hasChallenge, true);
  assert.equal(parsePolicy('sharedSecret:\n  keyFile: key.bin').hasChallenge, true, 'a shared secret alone is a policy');
  assert.deepEqual(
    shape(parsePolicy({ uid: [0], anyOf: [{ gid: 4 }] }).rules),
    shape(new Policy().uid([0]).anyOf(new Policy().gid(4)).rules),
  );
  assert.deepEqual(shape(parsePolicy('{"uid": 0, "memberOf": ["adm"]}').rules), shape(new Policy().uid(0).memberOf(['adm']).rules));
});

test('bad values name the field path and its line', () => {
  rejects('uid: -1', 'uid', 1, /integer id/);
  rejects('uid: "0"', 'uid', 1);
  rejects('uid: []', 'uid', 1, /non-empty array/);
  rejects('gid: 1.5', 'gid', 1);
  rejects('user: ""', 'user', 1);
  rejects('group: 4', 'group', 1);
  rejects('program: usr/bin/x', 'program', 1, /absolute path/);
  rejects('program:\n  - /usr/bin/a\n  - relative', 'program[1]', 3);
  rejects('perms: 0o1000', 'perms', 1);
  rejects('perms: "rw-rw----"', 'perms', 1, /octal string/);
  rejects('perms: 999', 'perms', 1);
  rejects('perms: 0999', 'perms', 1);
  rejects('creds: 12', 'creds', 1);
  rejects('label: ""', 'label', 1);
  rejects('programDigest: abc', 'programDigest', 1, /SHA-256/);
  rejects(`programDigest:\n  - ${'a'.repeat(64)}\n  - ${'g'.repeat(64)}`, 'programDigest[1]', 3);
  rejects('container: false', 'container', 1, /not: \{ container: true \}/);
  rejects('container: docker', 'container', 1);
  rejects('container:\n  runtime: docker\n  image: x', 'container.image', 3);
  rejects('container:\n  id: [abc, ""]', 'container.id[1]', 2);
  rejects('host: false', 'host', 1, /not: \{ host: true \}/);
  rejects('sameNamespace: [net, time]', 'sameNamespace[1]', 1, /one of pid, mnt/);
  rejects('anyOf:\n  - uid: 0\n  - memberOf: [adm, -4]\n', 'anyOf[1].memberOf[1]', 3);
  rejects('# comment\n\nanyOf:\n  - uid: 0\n  - gid: 0\n    memberOf: {}\n', 'anyOf[1].memberOf', 6);
  rejects('allOf: {uid: 0}', 'allOf', 1, /list of rule objects/);
  rejects('allOf: []', 'allOf', 1, /non-empty/);
  rejects('anyOf: []', 'anyOf', 1, /non-empty/);
  rejects('anyOf:\n  - 7', 'anyOf[0]', 2, /rule object/);
  rejects('not: 3', 'not', 1, /rule object/);
  rejects('not: {}', 'not', 1, /at least one rule/);
  rejects('version: 2\nuid: 0', 'version', 1, /must be 1/);
  rejects('uid: 0\nstrict: "yes"', 'strict', 2, /true or false/);
  rejects({ uid: -1 }, 'uid', undefined);
  rejects({ anyOf: [{ uid: 0 }, { gid: 'x' }] }, 'anyOf[1].gid', undefined);
});

test('unknown keys, misplaced keys and keys a file cannot hold are errors at the key line', () => {
  rejects('uid: 0\nmemberof: adm', 'memberof', 2, /unknown key "memberof" \(did you mean "memberOf"\?\)/);
  rejects('uid: 0\nfoo: 1', 'foo', 2, /unknown key "foo"/);
  rejects('anyOf:\n  - uid: 0\n    bogus:\n      - 1\n', 'anyOf[0].bogus', 3);
  rejects('callback: x', 'callback', 1, /code/);
  rejects('challengeSend: x', 'challengeSend', 1, /sharedSecret/);
  rejects('allOf:\n  - strict: true', 'allOf[0].strict', 2, /top of the document/);
  rejects('not:\n  version: 1', 'not.version', 2, /top of the document/);
  rejects('creds: a\nlabel: b', 'label', 2, /same rule/);
  rejects('__proto__: {uid: 0}\nuid: 1', '__proto__', 1, /unknown key/);
});

test('inline secrets are refused without echoing them', () => {
  for (const text of ['uid: 0\nsharedSecret: hunter2hunter2hunter2', 'uid: 0\nsharedSecret: [1, 2, 3]']) {
    assert.throws(
      () => parsePolicy(text),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, ErrorCode.POLICY_FILE);
        assert.match(e.message, /^sharedSecret \(line 2\): .*inline secrets are refused/);
        assert.doesNotMatch(e.message, /hunter2/);
        return true;
      },
    );
  }
  rejects('uid: 0\nsharedSecret:\n  keyFile: /k\n  secret: hunter2', 'sharedSecret.secret', 4, /inline secrets/);
  rejects('uid: 0\nsharedSecret:\n  keyFile: 3', 'sharedSecret.keyFile', 3, /path of a key file/);
});

test('syntax errors, empty documents and duplicate keys report a line', () => {
  assert.throws(
    () => parsePolicy('uid: 0\nanyOf: [\n  {uid: 1\n'),
    (e: Error & { code?: string; line?: number }) => {
      assert.equal(e.code, ErrorCode.POLICY_FILE);
      assert.match(e.message, /^line \d+, column \d+: not valid YAML or JSON: /);
      assert.equal(typeof e.line, 'number');
      return true;
    },
  );
  assert.throws(() => parsePolicy('uid: 0\nuid: 1'), { code: ErrorCode.POLICY_FILE, message: /^line 2, column 1: .*unique/ });
  assert.throws(() => parsePolicy('{"uid": 0,\n "uid": 1}'), { code: ErrorCode.POLICY_FILE, message: /^line 2, column 2: / });
  for (const empty of ['', '   \n', '# only a comment\n']) {
    assert.throws(() => parsePolicy(empty), { code: ErrorCode.POLICY_FILE, message: /the policy is empty/ });
  }
  rejects('{}', 'document', 1, /at least one rule/);
  rejects('version: 1', 'document', 1, /at least one rule/);
  rejects('42', 'document', 1, /rule object/);
  rejects('!!binary aGk=', 'document', 1, /rule object/);
  rejects('not: !!set {a}', 'not', 1, /rule object/);
  rejects('? [a]\n: 1', '[ a ]', 1, /unknown key/);
  assert.throws(() => parsePolicy(null as unknown as string), { code: ErrorCode.INVALID_ARG });
});

test('loadPolicy reads YAML and JSON files and names the file in errors', async (t) => {
  const tmp = tempDir('secpolicy-file-');
  t.after(() => tmp.cleanup());
  writeFileSync(
    tmp.path('p.json'),
    JSON.stringify({ version: 1, anyOf: [{ uid: 0 }, { memberOf: 'adm', program: '/usr/bin/socat' }] }, null, 2),
  );
  const json = await loadPolicy(tmp.path('p.json'));
  assert.deepEqual(
    shape(json.rules),
    shape(new Policy().anyOf(new Policy().uid(0), new Policy().memberOf('adm').program('/usr/bin/socat')).rules),
  );
  writeFileSync(tmp.path('bad.yaml'), '# comment\nuid: 0\nanyOf:\n  - gid: nope\n');
  await assert.rejects(loadPolicy(tmp.path('bad.yaml')), {
    code: ErrorCode.POLICY_FILE,
    message: `${tmp.path('bad.yaml')}: anyOf[0].gid (line 4): must be an integer id from 0 to 4294967294. Received "nope"`,
  });
  await assert.rejects(loadPolicy(tmp.path('missing.yaml')), (e: Error & { code?: string; cause?: { code?: string } }) => {
    assert.equal(e.code, ErrorCode.POLICY_FILE);
    assert.equal(e.cause?.code, 'ENOENT');
    return true;
  });
  await assert.rejects(loadPolicy(tmp.dir), { code: ErrorCode.POLICY_FILE, message: /cannot read the policy file/ });
  execFileSync('mkfifo', [tmp.path('fifo.yaml')]);
  await assert.rejects(loadPolicy(tmp.path('fifo.yaml')), { code: ErrorCode.POLICY_FILE, message: /not a regular file/ });
  writeFileSync(tmp.path('open.yaml'), 'uid: 0\n');
  chmodSync(tmp.path('open.yaml'), 0o666);
  await assert.rejects(loadPolicy(tmp.path('open.yaml')), { code: ErrorCode.POLICY_FILE, message: /writable by every user \(mode 0666\)/ });
  chmodSync(tmp.path('open.yaml'), 0o664);
  await assert.rejects(loadPolicy(tmp.path('open.yaml')), { code: ErrorCode.POLICY_FILE, message: /writable by its group/ });
  chmodSync(tmp.path('open.yaml'), 0o644);
  assert.equal((await loadPolicy(tmp.path('open.yaml'))).rules.length, 1);
  writeFileSync(tmp.path('binary.yaml'), Buffer.from([0x75, 0x69, 0x64, 0x3a, 0x20, 0xff, 0xfe]));
  await assert.rejects(loadPolicy(tmp.path('binary.yaml')), { code: ErrorCode.POLICY_FILE });
  await assert.rejects(async () => loadPolicy(''), { code: ErrorCode.INVALID_ARG });
});

test('an unreadable policy file is an error with its cause', { skip: needRoot() }, async (t) => {
  const tmp = tempDir('secpolicy-file-');
  t.after(() => tmp.cleanup());
  writeFileSync(tmp.path('p.yaml'), 'uid: 0\n');
  chmodSync(tmp.path('p.yaml'), 0o600);
  const script = `import(${JSON.stringify(pathToFileURL(sharedDist('src/index.js')).href)}).then((m) => m.loadPolicy(process.argv[1])).then(() => console.log('read'), (e) => console.log(e.code, e.cause && e.cause.code))`;
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(
    'setpriv',
    ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, '-e', script, tmp.path('p.yaml')],
    { encoding: 'utf8' },
  );
  assert.equal(r.stdout.trim(), 'ERR_SECPOLICY_POLICY_FILE EACCES', r.stderr);
});

test('the docker example from the README, applied to real connections', { skip: needRoot() }, async (t) => {
  const python = realpathSync('/usr/bin/python3');
  const policy = parsePolicy(`
# root, or a member of group adm running python3
anyOf:
  - uid: 0
  - memberOf: adm
    program: ${python}
`);
  const verdict = async (options: Parameters<typeof connection>[0]) => {
    const c = await connection(options);
    t.after(() => c.close());
    return (await policy.apply(c.socket)).allowed;
  };
  assert.equal(await verdict({ peer: nodePeer() }), true, 'a root peer passes');
  assert.equal(await verdict({ as: NOBODY, peer: nodePeer() }), false, 'nobody fails');
  assert.equal(await verdict({ as: { ...NOBODY, groups: [4] }, peer: pythonPeer }), true, 'a member of adm running python3 passes');
  assert.equal(await verdict({ as: { ...NOBODY, groups: [4] }, peer: nodePeer() }), false, 'a member of adm running another program fails');
  assert.equal(await verdict({ as: { ...NOBODY, groups: [24] }, peer: pythonPeer }), false, 'python3 outside group adm fails');
  assert.equal(await verdict({ as: { uid: 65534, gid: 4 }, peer: pythonPeer }), true, 'adm as primary group counts');
});

test(
  'host, sameNamespace and programDigest from a file, applied to peers in other namespaces',
  { skip: needRoot() || needCommand('unshare') },
  async (t) => {
    const node = realpathSync(process.execPath);
    const digest = createHash('sha256').update(readFileSync(node)).digest('hex');
    const policy = parsePolicy(`host: true\nsameNamespace: [net, user]\nprogramDigest: ${digest}\n`);
    const unshared =
      (flags: string[]) =>
      (path: string): [string, string[]] => {
        const [exe, args] = nodePeer()(path);
        return ['unshare', [...flags, '--', exe, ...args]];
      };
    const verdict = async (options: Parameters<typeof connection>[0]) => {
      const c = await connection(options);
      t.after(() => c.close());
      return policy.apply(c.socket);
    };
    assert.equal((await verdict({ peer: nodePeer() })).allowed, true, 'a node peer in our namespaces passes');
    const mnt = await verdict({ peer: unshared(['--mount']) });
    assert.deepEqual(resultNames(mnt.result), ['HOST'], 'another mount namespace is not our host');
    const net = await verdict({ peer: unshared(['--net']) });
    assert.deepEqual(resultNames(net.result), ['NAMESPACE'], 'another network namespace');
    const python = await verdict({ peer: pythonPeer });
    assert.deepEqual(resultNames(python.result), ['PROGRAM_DIGEST'], 'another program');
  },
);
