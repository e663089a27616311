/**
 * Operating the gateway, on the `secpolicy gateway` CLI as a real process in front of a
 * plain HTTP upstream: --check (users and groups must resolve), a SIGHUP reload with a
 * request held open across it, metrics that agree with the decision log, the new log
 * fields, --log-denied-only, and the log reopened on SIGUSR1 after a rename.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { realpathSync } from 'node:fs';
import { closeServer, tempDir } from '../helpers/index.js';
import { secpolicy } from '../cli/cli.js';
import { logHas, outputMatches, RawConnection, readLog, sample, scrape, startListening } from './operate-helpers.js';

const me = process.getuid!();

/** A plain upstream: `/slow` is answered only when release() is called; everything else at once. */
async function slowUpstream(path: string) {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let arrived!: () => void;
  const slowArrived = new Promise<void>((r) => (arrived = r));
  const server = http.createServer((req, res) => {
    const answer = (): void => {
      const body = JSON.stringify({ url: req.url });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }).end(body);
    };
    if (req.url === '/slow') {
      arrived();
      void released.then(answer);
    } else answer();
  });
  server.listen(path);
  await new Promise((r) => server.once('listening', r));
  return { server, release, slowArrived };
}

function policy(file: string, text: string): string {
  writeFileSync(file, text, { mode: 0o600 });
  return file;
}

test('--check: a valid policy exits 0; an unknown user or group exits 2 naming the field and line, and the gateway does not start', async () => {
  const tmp = tempDir('secpolicy-check-');
  try {
    const ok = policy(
      tmp.path('ok.yaml'),
      `version: 1\nrules:\n  - name: root\n    who: { user: root, memberOf: [root, 0] }\n    allow: ["GET /**"]\n`,
    );
    const good = await secpolicy(['gateway', '--check', '--policy', ok]);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /valid: 1 rule\(s\)/);

    const cases: Array<[string, RegExp]> = [
      [
        `version: 1\nrules:\n  - name: readers\n    who: { memberOf: [root, docker-r0] }\n    allow: ["GET /**"]\n`,
        /rules\[0\]\.who\.memberOf\[1\] \(line 4\).*group "docker-r0"/,
      ],
      [
        `version: 1\nrules:\n  - name: a\n    who: {}\n    allow: ["GET /**"]\n  - name: b\n    who:\n      anyOf:\n        - uid: 0\n        - not: { user: no-such-user-x }\n    allow: ["GET /**"]\n`,
        /rules\[1\]\.who\.anyOf\[1\]\.not\.user \(line 10\).*user "no-such-user-x"/,
      ],
      [`version: 1\nconnect: { group: no-such-group-x }\nrules: []\n`, /connect\.group \(line 2\).*group "no-such-group-x"/],
    ];
    for (const [i, [text, message]] of cases.entries()) {
      const file = policy(tmp.path(`bad${i}.yaml`), text);
      const check = await secpolicy(['gateway', '--check', '--policy', file]);
      assert.equal(check.code, 2, check.stdout);
      assert.match(check.stderr, /ERR_SECPOLICY_POLICY_FILE/);
      assert.match(check.stderr, message);
      // At start: the same error, and no socket is created.
      const start = await secpolicy(['gateway', '--listen', tmp.path(`gw${i}.sock`), '--to', tmp.path('up.sock'), '--policy', file]);
      assert.equal(start.code, 2);
      assert.match(start.stderr, message);
      assert.equal(existsSync(tmp.path(`gw${i}.sock`)), false);
    }
    const missing = await secpolicy(['gateway', '--policy', ok]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--listen and --to are required/);
  } finally {
    tmp.cleanup();
  }
});

/** A temporary directory (`prefix`) with a slow upstream and a gateway in front of it, with `text` as its policy, a decision log and a metrics socket. */
async function observedGateway(t: TestContext, prefix: string, text: string) {
  const tmp = tempDir(prefix);
  t.after(() => tmp.cleanup());
  const up = await slowUpstream(tmp.path('up.sock'));
  t.after(() => closeServer(up.server));
  const file = policy(tmp.path('policy.yaml'), text);
  const log = tmp.path('decisions.log');
  const metrics = tmp.path('metrics.sock');
  const gw = await startListening({
    socket: tmp.path('gw.sock'),
    target: tmp.path('up.sock'),
    policy: file,
    extra: ['--log', log, '--metrics', metrics],
  });
  t.after(() => gw.stop());
  return { tmp, up, file, log, metrics, gw };
}

test('SIGHUP: a request in flight finishes under the old policy, the next request on an old connection is decided by the new one, a bad file keeps it; the socket is never replaced', async (t) => {
  const { up, file, log, metrics, gw } = await observedGateway(
    t,
    'secpolicy-reload-',
    `version: 1\nrules:\n  - name: v1\n    who: { uid: ${me} }\n    allow: ["GET /**"]\n`,
  );
  const timeline: string[] = [];
  const start = performance.now();
  const at = (what: string): void => void timeline.push(`${(performance.now() - start).toFixed(1)} ms: ${what}`);
  const before = statSync(gw.socket);

  const old = await RawConnection.open(gw.socket);
  t.after(() => old.close());
  assert.equal((await old.request('GET', '/a')).status, 200);
  at('old connection: GET /a 200 under v1');
  const held = await RawConnection.open(gw.socket);
  t.after(() => held.close());
  const slow = held.request('GET', '/slow');
  await up.slowArrived;
  at('GET /slow allowed by v1, held open by the upstream');

  // v2's first rule is for someone else: what the old connection's peer matched under v1's
  // first rule must not carry over to it.
  policy(
    file,
    `version: 1\nrules:\n  - name: other\n    who: { uid: ${me + 1} }\n    allow: ["GET /**"]\n  - name: v2\n    who: { uid: ${me} }\n    allow: ["GET /b"]\n`,
  );
  gw.child.kill('SIGHUP');
  await outputMatches(gw, (o) => o.includes('SIGHUP: reloaded'));
  at('SIGHUP: reloaded to v2');
  const denied = await old.request('GET', '/a');
  assert.equal(denied.status, 403);
  assert.match(denied.body, /secpolicy: v2: GET \/a is not allowed/);
  assert.equal((await old.request('GET', '/b')).status, 200);
  at('old connection: GET /a 403, GET /b 200 under v2');
  const fresh = await RawConnection.open(gw.socket);
  t.after(() => fresh.close());
  assert.equal((await fresh.request('GET', '/slow')).status, 403);
  at('new connection: GET /slow 403 under v2');

  up.release();
  const finished = await slow;
  assert.equal(finished.status, 200);
  assert.equal(JSON.parse(finished.body).url, '/slow');
  at('the held GET /slow finished: 200 (decided by v1)');

  // A bad file: the running policy stays, and why is said on stderr.
  policy(file, `version: 1\nrules:\n  - name: v3\n    who: { uid: ${me} }\n    alow: ["GET /**"]\n`);
  gw.child.kill('SIGHUP');
  await outputMatches(gw, (o) => o.includes('reload failed'));
  assert.match(gw.output(), /SIGHUP: reload failed, the running policy stays: .*unknown key "alow"/);
  assert.equal((await old.request('GET', '/b')).status, 200);
  assert.equal((await old.request('GET', '/a')).status, 403);
  at('bad file: reload failed, v2 still decides');
  // A reload may not change connect: it is checked by the listening socket.
  policy(file, `version: 1\nconnect: { uid: ${me} }\nrules:\n  - name: v4\n    who: {}\n    allow: ["GET /**"]\n`);
  gw.child.kill('SIGHUP');
  await outputMatches(gw, (o) => o.split('reload failed').length === 3);
  assert.match(gw.output(), /`connect` differs from the running policy/);
  assert.equal((await old.request('GET', '/a')).status, 403);

  const after = statSync(gw.socket);
  assert.deepEqual([after.ino, after.dev, after.mode], [before.ino, before.dev, before.mode]);
  assert.equal(gw.child.exitCode, null);

  const m = await scrape(metrics);
  assert.equal(sample(m.samples, 'secpolicy_gateway_reloads_total', { result: 'success' }), 1);
  assert.equal(sample(m.samples, 'secpolicy_gateway_reloads_total', { result: 'failure' }), 2);
  const entries = await logHas(log, (e) => e.some((x) => x.path === '/slow' && x.status === 200), 'the held request');
  const held1 = entries.find((x) => x.path === '/slow' && x.status === 200)!;
  assert.equal(held1.rule, 'v1');
  assert.equal(held1.allowed, true);
  assert.ok(held1.durationMs! > 0);
  for (const line of ['reload timeline:', ...timeline]) t.diagnostic(line);
});

test('metrics agree with the decision log; the log has status, durationMs, query and program; an unreachable upstream is a 502 and an upstream error', async (t) => {
  const { tmp, file, log, metrics, gw } = await observedGateway(
    t,
    'secpolicy-metrics-',
    `version: 1\napi: docker\nrules:\n  - name: mine\n    who: { uid: ${me} }\n    allow: ["GET /ok/**", "HEAD /ok/**"]\n    deny: ["GET /ok/no"]\n  - name: others\n    who: {}\n    allow: ["GET /_ping"]\n`,
  );
  assert.equal(statSync(metrics).mode & 0o777, 0o600);

  const c = await RawConnection.open(gw.socket);
  const sent: Array<[string, string, number]> = [
    ['GET', '/ok/a?x=1&y=%20', 200],
    ['GET', '/v1.47/ok/b', 200],
    ['HEAD', '/ok/c', 200],
    ['GET', '/ok/no', 403],
    ['HEAD', '/ok/no', 403],
    ['DELETE', '/ok/a', 403],
    ['GET', '/other', 403],
    ['GET', '/ok/%2e%2e/%2e%2e/etc', 400],
    ['GET', '/ok/a%00b', 400],
  ];
  for (let round = 0; round < 3; round++) {
    for (const [method, target, status] of sent) assert.equal((await c.request(method, target)).status, status, `${method} ${target}`);
  }
  const during = await scrape(metrics);
  assert.equal(sample(during.samples, 'secpolicy_gateway_connections'), 1);
  c.close();

  const expected = sent.length * 3;
  const entries = await logHas(log, (e) => e.length >= expected, `${expected} entries`);
  assert.equal(entries.length, expected);
  const m = await scrape(metrics);
  assert.equal(m.status, 200);
  assert.match(m.type, /^text\/plain; version=0\.0\.4/);
  // Every (rule, verdict) pair of the log is a counter with the same count, and no counter has more.
  const counts = new Map<string, number>();
  for (const e of entries)
    counts.set(
      `${e.rule ?? ''}|${e.allowed ? 'allowed' : 'denied'}`,
      (counts.get(`${e.rule ?? ''}|${e.allowed ? 'allowed' : 'denied'}`) ?? 0) + 1,
    );
  const counters = m.samples.filter((s) => s.name === 'secpolicy_gateway_requests_total');
  assert.deepEqual(new Map(counters.map((s) => [`${s.labels.rule}|${s.labels.verdict}`, s.value])), counts);
  assert.equal(sample(m.samples, 'secpolicy_gateway_request_duration_seconds_count'), expected);
  assert.ok(m.samples.some((s) => s.name === 'secpolicy_gateway_request_duration_seconds_bucket' && s.labels.le === '+Inf'));
  assert.equal(sample(m.samples, 'secpolicy_gateway_upstream_errors_total'), 0);
  for (const line of ['metrics scrape:', ...m.text.split('\n').filter((l) => l.startsWith('secpolicy_gateway_') && !l.includes('_bucket'))])
    t.diagnostic(line);

  // The new fields.
  const first = entries[0]!;
  assert.equal(first.status, 200);
  assert.equal(first.query, 'x=1&y=%20');
  assert.equal(typeof first.durationMs, 'number');
  assert.equal(first.peer.program, realpathSync(process.execPath));
  assert.equal(entries[1]!.query, null);
  assert.deepEqual(
    entries.slice(0, sent.length).map((e) => e.status),
    sent.map(([, , s]) => s),
  );
  // The connection has closed: the gauge says so once the gateway has seen it.
  for (let i = 0; i < 1000 && sample((await scrape(metrics)).samples, 'secpolicy_gateway_connections') !== 0; i++)
    await new Promise((r) => setTimeout(r, 5));
  assert.equal(sample((await scrape(metrics)).samples, 'secpolicy_gateway_connections'), 0);
  // Only GET /metrics is served there.
  const other = await new Promise<number>((resolve, reject) =>
    http.get({ socketPath: metrics, path: '/' }, (r) => (r.resume(), resolve(r.statusCode!))).on('error', reject),
  );
  assert.equal(other, 404);

  // No upstream: 502, counted, and logged with that status.
  const dead = await startListening({
    socket: tmp.path('dead.sock'),
    target: tmp.path('nothing-here.sock'),
    policy: file,
    extra: ['--log', tmp.path('dead.log'), '--metrics', tmp.path('dead-metrics.sock'), '--metrics-mode', '0660'],
  });
  t.after(() => dead.stop());
  assert.equal(statSync(tmp.path('dead-metrics.sock')).mode & 0o777, 0o660);
  const d = await RawConnection.open(dead.socket);
  assert.equal((await d.request('GET', '/ok/a')).status, 502);
  d.close();
  const deadLog = await logHas(tmp.path('dead.log'), (e) => e.length === 1, 'the 502');
  assert.equal(deadLog[0]!.status, 502);
  assert.equal(sample((await scrape(tmp.path('dead-metrics.sock'))).samples, 'secpolicy_gateway_upstream_errors_total'), 1);
});

test('--log-denied-only logs only denials (metrics still count all); SIGUSR1 after a rename writes new lines to a new file at the path', async (t) => {
  const tmp = tempDir('secpolicy-logrotate-');
  t.after(() => tmp.cleanup());
  const up = await slowUpstream(tmp.path('up.sock'));
  t.after(() => closeServer(up.server));
  const file = policy(tmp.path('policy.yaml'), `version: 1\nrules:\n  - name: mine\n    who: { uid: ${me} }\n    allow: ["GET /ok/**"]\n`);
  const log = tmp.path('decisions.log');
  const gw = await startListening({
    socket: tmp.path('gw.sock'),
    target: tmp.path('up.sock'),
    policy: file,
    extra: ['--log', log, '--log-denied-only', '--metrics', tmp.path('m.sock')],
  });
  t.after(() => gw.stop());
  const c = await RawConnection.open(gw.socket);
  t.after(() => c.close());
  for (const p of ['/ok/1', '/no/1', '/ok/2', '/no/2']) await c.request('GET', p);
  const first = await logHas(log, (e) => e.length >= 2, 'two denials');
  assert.deepEqual(
    first.map((e) => [e.path, e.allowed, e.status]),
    [
      ['/no/1', false, 403],
      ['/no/2', false, 403],
    ],
  );
  const m = await scrape(tmp.path('m.sock'));
  assert.equal(sample(m.samples, 'secpolicy_gateway_requests_total', { rule: 'mine', verdict: 'allowed' }), 2);
  assert.equal(sample(m.samples, 'secpolicy_gateway_requests_total', { rule: 'mine', verdict: 'denied' }), 2);

  renameSync(log, `${log}.1`);
  gw.child.kill('SIGUSR1');
  await outputMatches(gw, (o) => o.includes('SIGUSR1: decision log reopened'));
  await c.request('GET', '/no/3');
  const second = await logHas(log, (e) => e.length >= 1, 'the denial after the reopen');
  assert.deepEqual(
    second.map((e) => e.path),
    ['/no/3'],
  );
  assert.equal(statSync(log).mode & 0o777, 0o600);
  assert.deepEqual(
    readLog(`${log}.1`).map((e) => e.path),
    ['/no/1', '/no/2'],
  );

  // A symlink planted at the path is not followed: the reopen fails, said on stderr, and
  // the lines go on to the file that was open.
  renameSync(log, `${log}.2`);
  writeFileSync(tmp.path('victim'), '', { mode: 0o600 });
  symlinkSync(tmp.path('victim'), log);
  gw.child.kill('SIGUSR1');
  await outputMatches(gw, (o) => o.includes('SIGUSR1: cannot reopen the decision log'));
  await c.request('GET', '/no/4');
  await logHas(`${log}.2`, (e) => e.some((x) => x.path === '/no/4'), 'the denial in the file still open');
  assert.equal(readFileSync(tmp.path('victim'), 'utf8'), '');
});

test('reloadGateway() in the library: a policy object or a file; a changed connect, a stranger server and a closing gateway are refused', async (t) => {
  const { reloadGateway, parseGatewayPolicy, closeGateway } = await import('../../src/index.js');
  const { gatewayFixture } = await import('./helpers.js');
  const net = await import('node:net');
  const gw = await gatewayFixture(t, `version: 1\nrules:\n  - name: one\n    who: {}\n    allow: ["GET /one"]\n`);
  const c = await RawConnection.open(gw.path);
  t.after(() => c.close());
  assert.equal((await c.request('GET', '/one')).status, 200);
  await reloadGateway(gw.server, parseGatewayPolicy(`version: 1\nrules:\n  - name: two\n    who: {}\n    allow: ["GET /two"]\n`));
  assert.equal((await c.request('GET', '/one')).status, 403);
  assert.equal((await c.request('GET', '/two')).status, 200);
  await assert.rejects(
    reloadGateway(gw.server, parseGatewayPolicy(`version: 1\nconnect: { uid: 0 }\nrules: []\n`)),
    (e: Error & { code?: string }) => e.code === 'ERR_SECPOLICY_POLICY_FILE' && /connect/.test(e.message),
  );
  await assert.rejects(reloadGateway(gw.server, tmpFile(t, `version: 1\nrules: {}\n`)), /rules/);
  await assert.rejects(reloadGateway(gw.server, { rules: [] } as never), { code: 'ERR_SECPOLICY_INVALID_ARG' });
  await assert.rejects(reloadGateway(net.createServer(), parseGatewayPolicy('rules: []')), { code: 'ERR_SECPOLICY_INVALID_ARG' });
  // What failed left the running policy alone.
  assert.equal((await c.request('GET', '/two')).status, 200);
  c.close();
  await closeGateway(gw.server, { grace: 0 });
  await assert.rejects(reloadGateway(gw.server, parseGatewayPolicy('rules: []')), /closing/);
});

function tmpFile(t: { after: (fn: () => void) => void }, text: string): string {
  const tmp = tempDir('secpolicy-reload-file-');
  t.after(() => tmp.cleanup());
  return policy(tmp.path('p.yaml'), text);
}

test("a reload makes the Docker profile anew from the new policy; its refusals (403, 400, the daemon's 404) are in the log with the status answered and counted in the metrics", async (t) => {
  const { reloadGateway, parseGatewayPolicy, createGateway, closeGateway } = await import('../../src/index.js');
  const { upstream } = await import('./helpers.js');
  const tmp = tempDir('secpolicy-reload-docker-');
  t.after(() => tmp.cleanup());
  // The stand-in for dockerd answers /version (1.41) and inspect (a clean container).
  const up = await upstream(t, tmp.path('up.sock'), {
    // A container that does not exist: the daemon's 404 to its inspect.
    handle: (req, res) => {
      if (req.url !== '/containers/gone/json') return false;
      res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"message":"No such container: gone"}');
      return true;
    },
  });
  const logs: import('../../src/index.js').GatewayLogEntry[] = [];
  let logged: (() => void) | undefined;
  const server = await createGateway({
    listen: tmp.path('gw.sock'),
    target: tmp.path('up.sock'),
    policy: parseGatewayPolicy(`version: 1\nrules:\n  - name: all\n    who: {}\n    allow: ["* /**"]\n`),
    mode: 0o600,
    metrics: tmp.path('metrics.sock'),
    log: (e) => {
      logs.push(e);
      logged?.();
    },
  });
  t.after(() => closeGateway(server, { grace: 0 }));
  /** Sends one request on its own connection; resolves with the status and the entry logged for it. */
  const send = async (method: string, path: string, body = '', headers: Record<string, string> = {}) => {
    const before = logs.length;
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ socketPath: tmp.path('gw.sock'), method, path, agent: false, headers }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      });
      req.on('error', reject);
      req.end(body);
    });
    while (logs.length === before) await new Promise<void>((r) => (logged = r));
    return { status, entry: logs[before]! };
  };
  const privileged = '{"Image":"bb","HostConfig":{"Privileged":true}}';
  // api: http: no profile, the body is forwarded as it is.
  assert.equal((await send('POST', '/containers/create', privileged)).status, 200);
  const versions = (): number => up.received.filter((r) => r.url === '/version').length;
  assert.equal(versions(), 0);

  await reloadGateway(
    server,
    parseGatewayPolicy(`version: 1\napi: docker\nrules:\n  - name: limited\n    who: {}\n    allow: ["* /**"]\n    docker: {}\n`),
  );
  const refusals: Array<[string, string, string, number, RegExp]> = [
    ['POST', '/containers/create', privileged, 403, /privileged/i],
    ['POST', '/containers/create', '{"Image":"bb","Bogus":1}', 403, /unknown field "Bogus"/],
    ['POST', '/containers/create', '{"Image":', 400, /body is refused/],
    ['POST', '/v1.47/containers/create', '{"Image":"bb"}', 403, /outside the API versions/],
    ['GET', '/v1.41/v1.41/containers/json', '', 400, /more than one API version prefix/],
    ['POST', '/build', '', 403, /is refused for a rule with docker limits/],
    ['POST', '/containers/gone/start', '', 404, /No such container: gone/],
  ];
  for (const [method, path, body, status, why] of refusals) {
    const r = await send(method, path, body, body ? { 'Content-Type': 'application/json' } : {});
    assert.equal(r.status, status, `${method} ${path} ${body}`);
    assert.equal(r.entry.status, status, `${method} ${path}: the entry has the status answered`);
    assert.equal(r.entry.allowed, false);
    assert.equal(r.entry.forwarded, false);
    assert.match(r.entry.reason, why);
  }
  assert.equal(versions(), 1, 'the new profile asked the daemon its API version');
  const passed = await send('POST', '/containers/create', '{"Image":"bb"}', { 'Content-Type': 'application/json' });
  assert.deepEqual([passed.status, passed.entry.status, passed.entry.allowed], [200, 200, true]);
  // The denied entries are the metrics' denied requests (the first, under api: http, was allowed).
  const m = await scrape(tmp.path('metrics.sock'));
  assert.equal(sample(m.samples, 'secpolicy_gateway_requests_total', { rule: 'limited', verdict: 'denied' }), refusals.length);
  assert.equal(sample(m.samples, 'secpolicy_gateway_requests_total', { rule: 'limited', verdict: 'allowed' }), 1);

  // The limits are the new policy's: privileged is allowed now, by a profile made anew.
  await reloadGateway(
    server,
    parseGatewayPolicy(
      `version: 1\napi: docker\nrules:\n  - name: privileged\n    who: {}\n    allow: ["* /**"]\n    docker: { privileged: true }\n`,
    ),
  );
  const now = await send('POST', '/containers/create', privileged, { 'Content-Type': 'application/json' });
  assert.deepEqual([now.status, now.entry.rule, now.entry.allowed], [200, 'privileged', true]);
  assert.equal(versions(), 2, 'the reload made a new profile, which asked again');
  // A reload back to api: http leaves no profile behind: the body goes on as it is.
  await reloadGateway(server, parseGatewayPolicy(`version: 1\nrules:\n  - name: all\n    who: {}\n    allow: ["* /**"]\n`));
  assert.equal((await send('POST', '/build', '')).status, 200);
});
