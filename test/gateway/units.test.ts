/** The gateway's pure parts: canonical targets, patterns, the Go-compatible JSON decoder, policy documents. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalTarget, dockerPath, general } from '../../src/gateway/path.js';
import { compileHostPattern, compileRequestPattern } from '../../src/gateway/pattern.js';
import { decodeGo, foldName, GoJsonError, GoSlice, parseGoJson, T } from '../../src/gateway/gojson.js';
import { cleanHostPath, normalizeCap } from '../../src/gateway/docker.js';
import { parseGatewayPolicy } from '../../src/index.js';

test('canonicalTarget: decodes, cleans dot segments and slashes, keeps the query, re-encodes what needs it', () => {
  const ok = (raw: string) => {
    const t = canonicalTarget(raw);
    assert.ok(!('error' in t), `${raw}: ${'error' in t ? t.error : ''}`);
    return t;
  };
  assert.deepEqual(ok('/'), { path: '/', segments: [], forward: '/', query: '' });
  assert.equal(ok('//a///b/').path, '/a/b');
  assert.equal(ok('/a/./b/../c?x=/../y').path, '/a/c');
  assert.equal(ok('/a/./b/../c?x=/../y').query, '?x=/../y');
  assert.equal(ok('/../../a').path, '/a');
  assert.equal(ok('/%61%62').path, '/ab');
  assert.equal(ok('/a%20b').forward, '/a%20b');
  assert.equal(ok('/a%25b').path, '/a%b');
  assert.equal(ok('/a%25b').forward, '/a%25b');
  assert.equal(ok('/%C3%A9').path, '/\u00e9');
  assert.equal(ok('/%C3%A9').forward, '/%C3%A9');
  assert.equal(ok('/a...').path, '/a...');
  assert.equal(ok('/...').path, '/...');
  for (const bad of [
    '',
    '*',
    'http://x/a',
    'x:80',
    '/a%2Fb',
    '/a%2fb',
    '/a%5Cb',
    '/a\\b',
    '/a%00',
    '/a%1f',
    '/a%7F',
    '/a%',
    '/a%4',
    '/a%g0',
    '/%2e',
    '/a/%2E%2E/b',
    '/a/.%2e/b',
    '/a#b',
    '/%FF',
    '/a b',
    '/\u00e9',
  ])
    assert.ok('error' in canonicalTarget(bad), bad);
});

test('dockerPath drops every leading version segment, and only when more follow', () => {
  const d = (raw: string) => dockerPath(canonicalTarget(raw) as never).path;
  assert.equal(d('/v1.41/containers/json'), '/containers/json');
  assert.equal(d('/v1.41/v1.24/containers/json'), '/containers/json');
  assert.equal(d('/v./containers/json'), '/containers/json');
  assert.equal(d('/v1.41'), '/v1.41');
  assert.equal(d('/containers/v1.41/json'), '/containers/v1.41/json');
  assert.equal(d('/vx/containers/json'), '/vx/containers/json');
});

test('patterns: * one segment (one or more in the Docker profile), ** any depth, literals without regard to case', () => {
  const p = compileRequestPattern('GET /containers/*/archive', false);
  assert.equal(p.method, 'GET');
  assert.ok(p.test('/containers/abc/archive'));
  assert.ok(p.test('/CONTAINERS/abc/Archive'));
  assert.ok(!p.test('/containers/a/b/archive'));
  assert.ok(!p.test('/containers/archive'));
  assert.ok(compileRequestPattern('GET /containers/*/archive', true).test('/containers/a/b/archive'));
  const all = compileRequestPattern('* /**', false);
  assert.ok(all.test('/') && all.test('/a') && all.test('/a/b/c'));
  const sub = compileRequestPattern('GET /a/**', false);
  assert.ok(sub.test('/a') && sub.test('/a/b/c') && !sub.test('/ab'));
  const host = compileHostPattern('/srv/ci/**');
  assert.ok(host('/srv/ci') && host('/srv/ci/x/y') && !host('/srv/cix') && !host('/SRV/ci/x'));
  assert.equal(cleanHostPath('/srv/ci/../../etc//'), '/etc');
  assert.equal(cleanHostPath('/srv/./ci/'), '/srv/ci');
  assert.equal(normalizeCap('SYS_ADMIN'), 'cap_sys_admin');
  assert.equal(normalizeCap('cap_\u212Aill'), 'cap_kill'); // Go's ToLower maps the Kelvin sign to k
  assert.equal(normalizeCap('All'), 'all');
});

const HC = T.struct({
  HostConfig: T.ptr(
    T.struct({
      Privileged: T.bool,
      Binds: T.slice(T.string),
      Mounts: T.slice(T.struct({ Type: T.string, Source: T.string })),
      Labels: T.map(T.string),
      CapAdd: T.strslice,
    }),
  ),
});
const decode = (s: string) => decodeGo(parseGoJson(Buffer.from(s)), HC).HostConfig as Record<string, unknown>;
const items = (v: unknown) => (v as GoSlice).items;

test('Go decoding: exact name first, else folded; last key wins; objects merge; null keeps scalars', () => {
  assert.equal(foldName('HoſtConfig'), 'HOSTCONFIG');
  assert.equal(foldName('\u212Aey'), 'KEY');
  assert.notEqual(foldName('Prıvileged'), foldName('Privileged'));
  assert.notEqual(foldName('PrİvIleged'), foldName('Privileged'));
  assert.equal(decode('{"HostConfig":{"privileged":true}}').Privileged, true);
  assert.equal(decode('{"HostConfig":{"Privileged":true,"PRIVILEGED":false}}').Privileged, false);
  assert.equal(decode('{"HostConfig":{"Privileged":true,"Privileged":null}}').Privileged, true);
  assert.equal(decode('{"HostConfig":{"Privileged":true},"hostconfig":{"Binds":["/a:/b"]}}').Privileged, true, 'merged, not replaced');
  assert.deepEqual(items(decode('{"HostConfig":{"Binds":["/a:/b"]},"HostConfig":{"Privileged":false}}').Binds), ['/a:/b']);
  assert.equal(decode('{"HostConfig":{"Privileged":true},"HostConfig":null}'), null);
  assert.deepEqual(items(decode('{"HostConfig":{"Binds":["/a:/b","/c:/d"],"Binds":["/e:/f"]}}').Binds), ['/e:/f']);
  // Go decodes into the old backing array: a null element keeps the old string; an object merges into the old struct.
  assert.deepEqual(items(decode('{"HostConfig":{"Binds":["/:/host"],"Binds":[null]}}').Binds), ['/:/host']);
  assert.deepEqual(
    items(decode('{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/"}],"Mounts":[{"Type":null}]}}').Mounts).map((m) => ({
      ...(m as object),
    })),
    [{ Type: 'bind', Source: '/' }],
  );
  // Elements past the current length but inside an earlier, longer list: Go's result depends on capacity.
  assert.throws(
    () => decode('{"HostConfig":{"Binds":["/a:/a","/:/host"],"Binds":["/b:/b"],"Binds":[null,null]}}'),
    (e: unknown) => e instanceof GoJsonError && e.kind === 'ambiguous',
  );
  const labels = decode('{"HostConfig":{"Labels":{"a":"1"},"Labels":{"b":"2","A":"3"}}}').Labels as Map<string, string>;
  assert.deepEqual(
    [...labels],
    [
      ['a', '1'],
      ['b', '2'],
      ['A', '3'],
    ],
    'map keys are exact, maps merge',
  );
  assert.deepEqual(decode('{"HostConfig":{"CapAdd":"ALL"}}').CapAdd, ['ALL']);
  assert.deepEqual(decode('{"HostConfig":{"CapAdd":["A",null]}}').CapAdd, ['A', '']);
  assert.throws(
    () => decode('{"HostConfig":{"Privileged":"true"}}'),
    (e: unknown) => e instanceof GoJsonError && e.kind === 'type',
  );
  assert.throws(
    () => decode('{"HostConfig":{"Binds":"/:/h"}}'),
    (e: unknown) => e instanceof GoJsonError && e.kind === 'type',
  );
});

test('Go strings: \\u escapes with surrogate pairs, lone surrogates and bad UTF-8 as U+FFFD (one per bad byte)', () => {
  const str = (bytes: Buffer | string) => (parseGoJson(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes)) as { v: string }).v;
  assert.equal(str('"\\u0050riv"'), 'Priv');
  assert.equal(str('"\\ud83d\\ude00"'), '\u{1F600}');
  assert.equal(str('"\\ud83dx"'), '\ufffdx');
  assert.equal(str('"\\ude00\\ud83d"'), '\ufffd\ufffd');
  assert.equal(str('"\\ud83d\\u0041"'), '\ufffdA');
  assert.equal(str(Buffer.from([0x22, 0x61, 0xff, 0x62, 0x22])), 'a\ufffdb');
  assert.equal(str(Buffer.from([0x22, 0xe2, 0x82, 0x22])), '\ufffd\ufffd');
  assert.equal(str(Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22])), '\ufffd\ufffd\ufffd', 'an encoded surrogate is not UTF-8');
  assert.equal(str(Buffer.from([0x22, 0xc0, 0xaf, 0x22])), '\ufffd\ufffd', 'overlong');
  assert.equal(str('"\u00e9\u212a"'), '\u00e9\u212a');
  for (const bad of ['"a', '"\\x"', '"\\u12"', '"\x01"', '{"a" 1}', '[1,]', '01', '1.', '-', 'tru', '{"a":1}x', '\ufeff{}', ''])
    assert.throws(() => parseGoJson(Buffer.from(bad)), GoJsonError, JSON.stringify(bad));
  assert.throws(() => parseGoJson(Buffer.from('['.repeat(600) + ']'.repeat(600))), /nested too deeply/);
});

test('gateway policy documents: unknown keys and bad values name the field and line', () => {
  const fails = (text: string, pattern: RegExp) =>
    assert.throws(
      () => parseGatewayPolicy(text, { source: 'g.yaml' }),
      (e: unknown) => (e as { code: string }).code === 'ERR_SECPOLICY_POLICY_FILE' && pattern.test((e as Error).message),
      text,
    );
  fails('version: 1\nrulez: []\n', /g\.yaml: rulez \(line 2\): unknown key "rulez"/);
  fails('rules:\n  - who: {}\n    allow: ["GET"]\n', /rules\[0\]\.allow.*METHOD \/path/);
  fails('rules:\n  - who: {}\n    allow: ["get /x"]\n', /upper case/);
  fails('rules:\n  - who: {}\n    allow: ["GET /a/../b"]\n', /dot segment/);
  fails('rules:\n  - who: { uidd: 0 }\n    allow: ["GET /**"]\n', /rules\[0\]\.who\.uidd \(line 2\): unknown key "uidd"/);
  fails('rules:\n  - who: { strict: true }\n    allow: ["GET /**"]\n', /only at the top/);
  fails('rules:\n  - who: { container: { name: ci } }\n    allow: ["GET /**"]\n', /api: docker/);
  fails('rules:\n  - who: {}\n    allow: ["GET /**"]\n    docker: { privileged: false }\n', /api: docker/);
  fails('api: docker\nrules:\n  - who: {}\n    allow: ["GET /**"]\n    docker:\n      bindz: []\n', /rules\[0\]\.docker\.bindz \(line 6\)/);
  fails('api: docker\nrules:\n  - who: {}\n    allow: ["GET /**"]\n    docker: { binds: ["srv"] }\n', /must start with \//);
  fails('rules:\n  - { name: a, who: {}, allow: ["GET /**"] }\n  - { name: a, who: {}, allow: ["GET /**"] }\n', /repeats the rule name/);
  fails('mode: permissive\nrules: []\n', /enforce" or "audit/);
  fails('forward: { signKeyFile: k }\nrules: []\n', /identity: true/);
  fails('connect: {}\nrules: []\n', /at least one rule/);
  fails('api: docker\nconnect: { container: { name: x } }\nrules: []\n', /cannot be used in connect/);
  const p = parseGatewayPolicy(
    'api: docker\nrules:\n  - who: {}\n    allow: "GET /**"\n    docker: {}\n  - who: { anyOf: [{ uid: 0 }, { container: { name: ci, label: { a: b } } }] }\n    allow: ["GET /**"]\n',
  );
  assert.equal(p.rules[0]!.name, 'rules[0]');
  assert.equal(p.rules[0]!.who, undefined);
  assert.deepEqual(p.rules[0]!.dockerLimits, {
    privileged: false,
    hostNamespaces: false,
    devices: false,
    capAdd: [],
    binds: [],
    securityOpt: [],
  });
  assert.equal(p.rules[1]!.dockerNames, true);
  assert.equal(p.mode, 'enforce');
  assert.equal(p.maxBodyBytes, 1024 * 1024);
});

test('decision log lines are JSON.stringify of the entry with DEL, C1, U+2028 and U+2029 escaped too; a file sink keeps order and close() writes what is queued', async () => {
  const { logLine, logSink } = await import('../../src/gateway/log.js');
  const { readFileSync } = await import('node:fs');
  const { tempDir } = await import('../helpers/index.js');
  const peer = {
    pid: 7,
    uid: 0,
    gid: 0,
    user: 'r\u00f6"ot\n',
    container: { runtime: 'docker', id: 'a'.repeat(64) },
    program: '/usr/bin/d\u2029',
  };
  const entries = [
    {
      time: '2026-01-01T00:00:00.000Z',
      peer,
      method: 'GET',
      path: '/a\u2028"\\',
      rule: 'r',
      allowed: true,
      reason: 'allowed by "GET /**"',
      mode: 'enforce' as const,
      forwarded: true,
    },
    {
      time: 't',
      peer: { ...peer, user: null, container: null, program: null },
      method: null,
      path: null,
      rule: null,
      allowed: false,
      reason: '\u0000\ud800',
      mode: 'audit' as const,
      forwarded: false,
      query: 'all=1&filters=%7B%7D',
      status: 403,
      durationMs: 1.25,
    },
  ];
  const escaped = (e: object): string =>
    JSON.stringify(e).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) + '\n';
  for (const e of entries) {
    assert.equal(logLine(e), escaped(e));
    assert.deepEqual(JSON.parse(logLine(e)), e);
  }
  assert.match(logLine(entries[0]!), /"path":"\/a\\u2028\\"\\\\"/);
  // The peer part is cached per LogPeer object: the same object gives the same text.
  assert.equal(logLine(entries[0]!), escaped(entries[0]!));
  const tmp = tempDir('secpolicy-log-');
  try {
    const sink = logSink(tmp.path('d.log'))!;
    for (let i = 0; i < 1000; i++) sink.write({ ...entries[0]!, path: `/${i}` });
    // Written once per turn of the event loop: after one turn, all of them are there.
    await new Promise((r) => setImmediate(r));
    assert.equal(readFileSync(tmp.path('d.log'), 'utf8').split('\n').length - 1, 1000);
    for (let i = 1000; i < 1010; i++) sink.write({ ...entries[0]!, path: `/${i}` });
    sink.close();
    sink.write({ ...entries[0]!, path: '/after-close' });
    const lines = readFileSync(tmp.path('d.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).path);
    assert.deepEqual(
      lines,
      Array.from({ length: 1010 }, (_, i) => `/${i}`),
    );
  } finally {
    tmp.cleanup();
  }
});

test('canonicalTarget: a path taken as already canonical gives what the segment-by-segment decoder gives', () => {
  // A fixed pseudo-random sequence (xorshift): the same paths on every run.
  let x = 0x9e3779b9;
  const next = (n: number) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  const alphabet = [
    'a',
    'B',
    '0',
    '.',
    '.',
    '/',
    '/',
    '%',
    '2',
    'e',
    'F',
    '~',
    ':',
    '@',
    '\\',
    ' ',
    '\u00e9',
    '-',
    '_',
    '!',
    '*',
    '\u0000',
    '\u007f',
  ];
  let fast = 0;
  for (let i = 0; i < 20_000; i++) {
    let p = '/';
    for (let n = next(12); n > 0; n--) p += alphabet[next(alphabet.length)];
    const t = canonicalTarget(p);
    assert.deepEqual(t, general(p, ''), p);
    if (!('error' in t) && t.path === p) fast++;
  }
  // Both kinds were drawn: plain paths and ones that need decoding or cleaning.
  assert.ok(fast > 1000 && fast < 19_000, String(fast));
  for (const plain of ['/', '/_ping', '/v1.41/containers/json', "/a-b_c.d~e!$&'()*+,;=:@/x", '/...', '/a.', '/.a', '/a..b'])
    assert.deepEqual(canonicalTarget(plain), general(plain, ''), plain);
});
