/**
 * `secpolicy explain` against the running gateway: the same generated requests (method,
 * version prefix in and out of the Docker profile's window, segments including encoded and
 * dot ones, a query, container create bodies with allowed, forbidden and unknown fields,
 * malformed JSON, starts and exec starts whose effective state the daemon reports, endpoints
 * the profile does not model) are sent through a `secpolicy gateway` process by real
 * processes of each identity (setpriv, python3 as the client) and explained for the same
 * identity, and every answer must be the same: the gateway's own status (400, 403, 413,
 * 502) or the upstream's 200 when it forwards. The upstream stands in for dockerd (it
 * answers /version and inspect; a real daemon's containers cannot be made privileged and
 * missing on demand here): explain is given it with `--to`, as the gateway is. Without
 * `--to` the answers must be the same too, except where explain names the effective state
 * as not evaluated.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { realpathSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import fc from 'fast-check';
import { explainRequest, parseIdentity, type Explanation, type StatedIdentity } from '../../src/gateway/explain.js';
import { loadGatewayPolicy } from '../../src/gateway/policy.js';
import { closeServer, needCommand, needRoot, run, tempDir, type RunAs } from '../helpers/index.js';
import { secpolicy } from '../cli/cli.js';
import { fakeId, PYTHON, upstream } from './helpers.js';
import { startListening } from './operate-helpers.js';

const skip = needRoot() || needCommand('setpriv');
const python = realpathSync(PYTHON);

/** Sends each request on its own connection and prints the status of each answer (0: no answer). */
const PY_BATCH = `
import base64, json, socket, sys
out = []
for r in json.load(sys.stdin):
    body = base64.b64decode(r['b'])
    head = '%s %s HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n' % (r['m'], r['t'])
    if r['m'] not in ('GET', 'HEAD') or body:
        head += 'Content-Type: application/json\\r\\nContent-Length: %d\\r\\n' % len(body)
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(sys.argv[1])
    try:
        s.sendall(head.encode('latin1') + b'\\r\\n' + body)
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = b''
    while True:
        try:
            d = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not d:
            break
        data += d
    s.close()
    out.append(int(data[9:12]) if data.startswith(b'HTTP/1.1 ') else 0)
print(json.dumps(out))
`;

interface Sent {
  m: string;
  t: string;
  b: string;
}

const segment = fc.constantFrom(
  'containers',
  'CONTAINERS',
  'images',
  '_ping',
  'version',
  'json',
  'create',
  'exec',
  'archive',
  'abc',
  'a%2Fb',
  '%2e%2e',
  '..',
  '.',
  'a b'.replace(' ', '%20'),
  '',
);
/** The daemon's answers the upstream gives: a container privileged as the daemon reports it, one that is gone. */
function daemonStandIn(req: http.IncomingMessage, res: http.ServerResponse): boolean {
  const answer = (status: number, body: object): boolean => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) }).end(text);
    return true;
  };
  if (req.url === '/containers/bad/json') return answer(200, { Id: fakeId('bad'), HostConfig: { Privileged: true }, Mounts: [] });
  if (req.url === '/containers/gone/json') return answer(404, { message: 'No such container: gone' });
  return false;
}

const version = fc.constantFrom('', '/v1.41', '/v1.24', '/v1.23', '/v1.47', '/v1.41/v1.41');
const createBody = fc.constantFrom(
  '',
  '{"Image":"bb"}',
  '{"Image":"bb","Env":["A=1"],"Tty":true}',
  '{"Image":"bb","HostConfig":{"Privileged":true}}',
  '{"Image":"bb","HostConfig":{"Binds":["/srv/data:/d"]}}',
  '{"Image":"bb","HostConfig":{"Binds":["/srv/data:/d:ro"]}}',
  '{"Image":"bb","HostConfig":{"Binds":["/etc:/etc:ro"]}}',
  '{"Image":"bb","Privileged":true}',
  '{"Image":"bb","Bogus":1}',
  '{"Image":"bb","HostConfig":{"Bogus":1}}',
  '{"image":"bb","hostconfig":{"privileged":true}}',
  '{"Image":',
  `{"Image":"bb","Labels":{"x":"${'y'.repeat(120)}"}}`,
);
const random = fc
  .record({
    m: fc.constantFrom('GET', 'HEAD', 'POST', 'DELETE', 'PUT'),
    version,
    segments: fc.array(segment, { minLength: 0, maxLength: 4 }),
    query: fc.constantFrom('', '?all=1', '?a=%2F'),
    body: createBody,
  })
  .map(({ m, version, segments, query, body }): Sent => ({
    m,
    t: `${version}/${segments.join('/')}${query}`,
    b: Buffer.from(m === 'POST' ? body : '').toString('base64'),
  }));
const create = fc
  .record({ version, query: fc.constantFrom('', '?name=web', '?platform=linux'), body: createBody })
  .map(({ version, query, body }): Sent => ({
    m: 'POST',
    t: `${version}/containers/create${query}`,
    b: Buffer.from(body).toString('base64'),
  }));
/** Starts, restarts, attaches and exec starts: the effective state is asked of the daemon first. */
const effective = fc
  .record({
    version,
    target: fc.constantFrom(
      '/containers/ok/start',
      '/containers/bad/start',
      '/containers/gone/start',
      '/containers/bad/restart',
      '/containers/ok/attach?stream=1&stdout=1',
      '/containers/bad/attach?stream=1',
      '/exec/e1/start',
      '/containers/ok/stop',
    ),
    body: fc.constantFrom('', '{"Detach":true}', '{"Detach":true,"Bogus":1}'),
  })
  .map(({ version, target, body }): Sent => ({ m: 'POST', t: version + target, b: Buffer.from(body).toString('base64') }));
/** Endpoints the Docker profile refuses or does not know, whatever the allow patterns say. */
const unmodelled = fc
  .record({
    version,
    call: fc.constantFrom(
      ['POST', '/build'],
      ['POST', '/images/load'],
      ['GET', '/plugins'],
      ['POST', '/swarm/init'],
      ['PUT', '/containers/ok/archive?path=/'],
      ['POST', '/networks/create'],
      ['POST', '/session'],
      ['GET', '/containers/ok/unknown-thing'],
    ),
  })
  .map(({ version, call }): Sent => ({ m: call[0]!, t: version + call[1]!, b: '' }));
const request = fc.oneof(random, create, effective, unmodelled);

/** Requests in every sample: each kind of the Docker profile's answer at least once. */
const FIXED: Sent[] = [
  ['POST', '/v1.41/containers/create', '{"Image":"bb","HostConfig":{"Binds":["/srv/data:/d:ro"]}}'],
  ['POST', '/v1.47/containers/create', '{"Image":"bb"}'],
  ['POST', '/v1.23/containers/create', '{"Image":"bb"}'],
  ['POST', '/containers/create', '{"Image":"bb","Bogus":1}'],
  ['POST', '/containers/create', '{"Image":"bb","HostConfig":{"Privileged":true}}'],
  ['POST', '/containers/create', '{"Image":'],
  ['POST', '/containers/create', `{"Image":"bb","Labels":{"x":"${'y'.repeat(120)}"}}`],
  ['POST', '/build', ''],
  ['POST', '/containers/ok/start', ''],
  ['POST', '/containers/bad/start', ''],
  ['POST', '/containers/gone/start', ''],
  ['POST', '/exec/e1/start', '{"Detach":true}'],
].map(([m, t, b]) => ({ m: m!, t: t!, b: Buffer.from(b!).toString('base64') }));

test('explain gives the running gateway’s answer for every generated request from every identity', { skip }, async (t) => {
  const tmp = tempDir('secpolicy-explain-');
  t.after(() => tmp.cleanup());
  const daemon = tmp.path('up.sock');
  await upstream(t, daemon, { handle: daemonStandIn });
  const file = tmp.path('policy.yaml');
  writeFileSync(
    file,
    `version: 1
api: docker
maxBodyBytes: 120
connect: { not: { uid: 4244 } }
rules:
  - name: admin
    who: { uid: 0, program: ${python} }
    allow: ["* /**"]
    deny: ["POST /containers/*/exec", "GET /containers/*/archive"]
    docker: { binds: ["/srv/**"] }
  - name: readers
    who: { memberOf: 4242 }
    allow: ["GET /containers/**", "GET /images/**", "HEAD /_ping", "GET /_ping", "POST /containers/create", "POST /containers/*/start", "POST /exec/*/start", "POST /build"]
    docker: {}
  - name: named
    who: { user: nobody }
    allow: ["GET /version", "DELETE /containers/*"]
  - name: anyone
    who: { not: { uid: 0 } }
    allow: ["GET /_ping"]
`,
    { mode: 0o600 },
  );
  const policy = await loadGatewayPolicy(file);
  const gw = await startListening({ socket: tmp.path('gw.sock'), target: tmp.path('up.sock'), policy: file, extra: ['--mode', '0666'] });
  t.after(() => gw.stop());

  const identities: Array<[RunAs, StatedIdentity]> = [
    [
      { uid: 0, gid: 0, groups: [] },
      { uid: 0, gid: 0, groups: [], program: python },
    ],
    [
      { uid: 65534, gid: 65534, groups: [4242] },
      { uid: 65534, gid: 65534, groups: [4242], program: python },
    ],
    [
      { uid: 65534, gid: 65534, groups: [] },
      { uid: 65534, gid: 65534, groups: [], program: python },
    ],
    [
      { uid: 4243, gid: 4243, groups: [] },
      { uid: 4243, gid: 4243, groups: [], program: python },
    ],
    [
      { uid: 4244, gid: 4244, groups: [] },
      { uid: 4244, gid: 4244, groups: [], program: python },
    ],
  ];
  const seed = Number(process.env.SECPOLICY_FC_SEED ?? Date.now() % 2 ** 31);
  const sampled = fc.sample(request, { numRuns: 60, seed });
  const requests = [...sampled, ...FIXED];
  let agreed = 0;
  let agreedWithout = 0;
  let notEvaluated = 0;
  let viaCommand = 0;
  const byStatus = new Map<number, number>();
  const reasons: string[] = [];
  const answerOf = (e: Explanation): number => (e.connection === 'refused' ? 0 : (e.status ?? 200));
  for (const [as, stated] of identities) {
    const child = run(python, ['-c', PY_BATCH, gw.socket], { as });
    child.stdin!.end(JSON.stringify(requests));
    const out = await child.output();
    assert.equal(out.code, 0, out.stderr);
    const statuses = JSON.parse(out.stdout) as number[];
    for (const [i, r] of requests.entries()) {
      const body = Buffer.from(r.b, 'base64');
      const what = `uid ${as.uid} groups ${as.groups}: ${r.m} ${r.t} ${body}: gateway ${statuses[i]}`;
      // With the daemon's socket, as the gateway has it: the same answer, always.
      const e = await explainRequest(policy, stated, r.m, r.t, { body, to: daemon });
      // A connection refused by `connect` gets no answer at all.
      const expected = answerOf(e);
      assert.equal(statuses[i], expected, `${what}, explain --to ${JSON.stringify(e)} (seed ${seed})`);
      assert.deepEqual(e.notEvaluated, [], what);
      agreed++;
      byStatus.set(expected, (byStatus.get(expected) ?? 0) + 1);
      reasons.push(...e.reasons);
      // Without it: the newest modelled version (the stand-in's) for an unversioned path; only the effective state may differ.
      const alone = await explainRequest(policy, stated, r.m, r.t, { body });
      if (alone.notEvaluated.some((n) => n.startsWith('the effective state'))) {
        assert.equal(alone.status, null, `${what}, explain ${JSON.stringify(alone)}`);
        notEvaluated++;
      } else {
        assert.equal(statuses[i], answerOf(alone), `${what}, explain ${JSON.stringify(alone)} (seed ${seed})`);
        agreedWithout++;
      }
      // Some of each identity through the `secpolicy explain` command too (all the fixed ones for one
      // identity under docker limits): its status and exit code.
      if (i < 3 || (i >= sampled.length && as.groups?.includes(4242) === true)) {
        const file2 = tmp.path('body');
        writeFileSync(file2, body);
        const who = `uid=${stated.uid},gid=${stated.gid},groups=${stated.groups!.join(':')},program=${python}`;
        const cli = await secpolicy(['explain', '--policy', file, '--as', who, '--body', file2, '--to', daemon, '--json', r.m, r.t]);
        assert.equal(cli.code, statuses[i] === 200 ? 0 : 1, `${who} ${r.m} ${r.t}: ${cli.stdout}${cli.stderr}`);
        const shown = JSON.parse(cli.stdout) as { status: number | null; connection: string };
        assert.equal(shown.connection === 'refused' ? 0 : (shown.status ?? 200), statuses[i]);
        viaCommand++;
      }
    }
  }
  t.diagnostic(
    `explain --to agreed with the running gateway on ${agreed} of ${agreed} requests, without --to on ${agreedWithout} (${notEvaluated} more with the effective state not evaluated); ${viaCommand} also through the command (seed ${seed}): ${[...byStatus].map(([s, n]) => `${s}: ${n}`).join(', ')}`,
  );
  // The requests cover each kind of answer, and each of the Docker profile's refusals.
  for (const s of [200, 403, 400, 404, 413, 0]) assert.ok(byStatus.has(s), `no ${s} in the sample (seed ${seed})`);
  for (const kind of [
    /outside the API versions the Docker profile models/,
    /unknown field "Bogus"/,
    /is refused for a rule with docker limits/,
    /privileged.*as the daemon reports it/i,
    /No such container: gone/,
    /forwarded to [0-9a-f]{64}, the full Id/,
    /passes the Docker profile/,
  ])
    assert.ok(
      reasons.some((r) => kind.test(r)),
      `no reason matching ${kind} (seed ${seed})`,
    );
});

test('secpolicy explain: exit 0 forwarded, 1 for the gateway’s own answer, 2 for an error; --json; identities parsed strictly', async () => {
  const tmp = tempDir('secpolicy-explain-cli-');
  try {
    const file = tmp.path('policy.yaml');
    writeFileSync(
      file,
      `version: 1\napi: docker\nrules:\n  - name: readers\n    who: { memberOf: 4242 }\n    allow: ["GET /containers/**"]\n    docker: {}\n  - name: ci\n    who: { uid: 1000 }\n    allow: ["POST /containers/create"]\n    docker: {}\n`,
      { mode: 0o600 },
    );
    const allowed = await secpolicy([
      'explain',
      '--policy',
      file,
      '--as',
      'uid=1000,gid=1000,groups=4242',
      'GET',
      '/v1.41/containers/json?all=1',
    ]);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(
      allowed.stdout,
      /^allowed: forwarded: GET \/v1\.41\/containers\/json\?all=1\n {2}path: \/containers\/json\n {2}rule: readers, pattern "GET \/containers\/\*\*"/,
    );
    const denied = await secpolicy(['explain', '--policy', file, '--as', 'uid=1000,gid=1000,groups=', 'DELETE', '/containers/x', '--json']);
    assert.equal(denied.code, 1);
    const d = JSON.parse(denied.stdout);
    assert.deepEqual([d.status, d.rule, d.allowed], [403, 'ci', false]);
    assert.match(d.reasons[0], /rule readers: who does not match/);
    // Groups not stated are unknown: memberOf cannot match, and explain says why.
    const unknown = await secpolicy(['explain', '--policy', file, '--as', 'uid=1001,gid=1001', 'GET', '/containers/json', '--json']);
    assert.equal(unknown.code, 1);
    assert.match(JSON.parse(unknown.stdout).reasons.join(' '), /supplementary groups not stated/);
    const body = tmp.path('body.json');
    writeFileSync(body, '{"Image":"bb","HostConfig":{"Privileged":true}}');
    const privileged = await secpolicy([
      'explain',
      '--policy',
      file,
      '--as',
      'uid=1000,gid=1000,groups=',
      '--body',
      body,
      'POST',
      '/containers/create',
      '--json',
    ]);
    assert.equal(privileged.code, 1);
    assert.equal(JSON.parse(privileged.stdout).status, 403);
    assert.match(JSON.parse(privileged.stdout).reasons.at(-1), /privileged/i);
    const bad = await secpolicy(['explain', '--policy', file, '--as', 'uid=1000', 'GET', '/a/%2e%2e/%2e%2e/b']);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /^refused \(400\)/);
    for (const who of ['gid=1', 'uid=x', 'uid=1,uid=2', 'uid=1,program=rel', 'uid=1,shell=/bin/sh']) {
      const r = await secpolicy(['explain', '--policy', file, '--as', who, 'GET', '/']);
      assert.equal(r.code, 2, who);
      assert.match(r.stderr, /ERR_SECPOLICY_INVALID_ARG/);
    }
    assert.deepEqual(parseIdentity('uid=5,gid=6,groups=7:8,program=/bin/sh,container=/web'), {
      uid: 5,
      gid: 6,
      groups: [7, 8],
      program: '/bin/sh',
      container: 'web',
    });
  } finally {
    tmp.cleanup();
  }
});

test('explain --to: a container named in --as is looked up on the daemon socket for its labels; without --to they are not evaluated', async (t) => {
  const tmp = tempDir('secpolicy-explain-to-');
  t.after(() => tmp.cleanup());
  // A stand-in for the daemon's inspect endpoint (only that one is asked).
  const seen: string[] = [];
  const daemon = http.createServer((req, res) => {
    seen.push(req.url!);
    const found = req.url === '/containers/web/json';
    const body = JSON.stringify(found ? { Name: '/web', Config: { Labels: { tier: 'front' } } } : { message: 'No such container' });
    res.writeHead(found ? 200 : 404, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }).end(body);
  });
  daemon.listen(tmp.path('docker.sock'));
  await new Promise((r) => daemon.once('listening', r));
  t.after(() => closeServer(daemon));
  const { parseGatewayPolicy } = await import('../../src/gateway/policy.js');
  const policy = parseGatewayPolicy(
    'version: 1\napi: docker\nrules:\n  - name: front\n    who: { container: { name: web, label: { tier: front } } }\n    allow: ["GET /_ping"]\n',
  );
  const id = parseIdentity('uid=0,gid=0,groups=,container=web');
  const withDaemon = await explainRequest(policy, id, 'GET', '/_ping', { to: tmp.path('docker.sock') });
  assert.deepEqual([withDaemon.status, withDaemon.rule, withDaemon.notEvaluated], [null, 'front', []]);
  assert.deepEqual(seen, ['/containers/web/json']);
  const without = await explainRequest(policy, id, 'GET', '/_ping');
  assert.equal(without.status, 403);
  assert.match(without.notEvaluated.join(), /container labels/);
  const unknown = await explainRequest(policy, parseIdentity('uid=0,gid=0,groups=,container=db'), 'GET', '/_ping', {
    to: tmp.path('docker.sock'),
  });
  assert.equal(unknown.status, 403);
  assert.match(unknown.reasons.join(' '), /unknown|404/);
});
