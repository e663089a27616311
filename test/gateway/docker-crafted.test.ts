/**
 * Requests a docker CLI would never send, through the `secpolicy gateway` CLI in front of
 * a real dockerd: other spellings of a refused path, bodies the daemon (Go's
 * encoding/json) reads differently from a naive parser, chunked bodies, pipelined and
 * keep-alive requests, an Upgrade on an ordinary endpoint. Each is refused, and the
 * daemon, asked directly, confirms nothing was created. Also: a process inside a
 * container matched by `who: { container: { name } }`, and other containers not.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { IMAGE, UNIX_HTTP_CLIENT, startDockerd, type GatewayProcess } from '../helpers/dockerd.js';
import { curlAs, json, startDockerGateway } from './docker-fixture.js';
import { needCommand, run, type RunAs } from '../helpers/index.js';
import { compileStatic } from '../helpers/runc.js';

const daemon = await startDockerd();
const skip = daemon.skip || needCommand('setpriv', 'curl', 'cc');

/** Allowed to create containers within limits. */
const BUILDER: RunAs = { uid: 1, gid: 1 }; // daemon
/** Allowed to read only (member of gid 2 through a supplementary group). */
const VIEWER: RunAs = { uid: 65534, gid: 65534, groups: [2] };

let gateway: GatewayProcess;
let client: string;

before(async () => {
  if (skip) return;
  mkdirSync(join(daemon.dir, 'ok'), { mode: 0o755 });
  gateway = await startDockerGateway(
    daemon,
    `version: 1
api: docker
rules:
  - name: builder
    who: { uid: 1 }
    allow: ["GET /**", "HEAD /**", "POST /containers/create"]
    docker: { privileged: false, hostNamespaces: false, capAdd: [], devices: false, binds: ["${daemon.dir}/ok/**"] }
  - name: viewer
    who: { memberOf: 2 }
    allow: ["GET /**", "HEAD /**"]
  - name: runner
    who: { container: { name: ci-runner } }
    allow: ["GET /containers/json"]
`,
  );
  client = join(daemon.dir, 'bin', 'client');
  compileStatic(UNIX_HTTP_CLIENT, client);
});

after(async () => {
  await gateway?.stop();
  await daemon.stop();
});

/** curl as `as` against the gateway; `args` go before the URL. Returns the status and body. */
function curl(as: RunAs, method: string, path: string, args: string[] = []): Promise<{ status: number; body: string }> {
  return curlAs(gateway.socket, as, method, path, args);
}

/** Asserts `status` is a refusal by the gateway and the daemon has no container `name`. */
async function assertNotCreated(what: string, r: { status: number; body: string }, name: string): Promise<void> {
  assert.ok(r.status === 403 || r.status === 400, `${what}: status ${r.status} ${r.body}`);
  if (r.status === 403) assert.match(r.body, /"message":\s*"secpolicy: /, what);
  assert.ok(!(await daemon.containerNames()).includes(name), `${what}: the daemon created ${name}`);
}

test('other spellings of POST /containers/create are decided as that path, for a reader and for a limited creator', { skip }, async () => {
  const spellings = [
    '/v1.41/containers/create',
    '//containers/create',
    '/containers//create',
    '/containers/%63reate',
    '/%63ontainers/create',
    '/CONTAINERS/create',
    '/containers/create/',
    '/containers/../containers/create',
    '/v1.41/containers/x/../create',
    '/images/../containers/./create',
    '/containers%2fcreate',
    '/containers/create%00',
    '/containers/create;x',
  ];
  const privileged = JSON.stringify({ Image: IMAGE, HostConfig: { Privileged: true } });
  await Promise.all(
    spellings.flatMap((path, i) => [
      (async () => {
        const name = `spell-viewer-${i}`;
        const r = await curl(VIEWER, 'POST', `${path}?name=${name}`, json(JSON.stringify({ Image: IMAGE })));
        await assertNotCreated(`viewer ${path}`, r, name);
      })(),
      (async () => {
        const name = `spell-builder-${i}`;
        const r = await curl(BUILDER, 'POST', `${path}?name=${name}`, json(privileged));
        await assertNotCreated(`builder ${path}`, r, name);
      })(),
    ]),
  );
});

test(
  'create bodies are read as the daemon reads them: case-folded keys, duplicates, \\u escapes, chunked, no content type',
  { skip },
  async () => {
    const bodies: Array<[string, string, string[]?]> = [
      ['lower-case keys', `{"Image":"${IMAGE}","hostconfig":{"privileged":true}}`],
      ['mixed-case keys', `{"Image":"${IMAGE}","HOSTCONFIG":{"PrIvIlEgEd":true}}`],
      ['a later duplicate key wins', `{"Image":"${IMAGE}","HostConfig":{"Privileged":false,"Privileged":true}}`],
      ['a later case-folded duplicate wins', `{"Image":"${IMAGE}","HostConfig":{"Privileged":false,"privileged":true}}`],
      ['duplicate objects', `{"Image":"${IMAGE}","HostConfig":{"Privileged":false},"HostConfig":{"Privileged":true}}`],
      ['\\u escape in a key', `{"Image":"${IMAGE}","HostConfig":{"Priv\\u0069leged":true}}`],
      ['\\u escape in a bind', `{"Image":"${IMAGE}","HostConfig":{"Binds":["\\u002f:/host"]}}`],
      ['bind outside the tree', `{"Image":"${IMAGE}","HostConfig":{"Binds":["/etc:/x"]}}`],
      ['mount outside the tree', `{"Image":"${IMAGE}","HostConfig":{"Mounts":[{"Type":"bind","Source":"/etc","Target":"/x"}]}}`],
      ['lower-case capability', `{"Image":"${IMAGE}","HostConfig":{"CapAdd":["sys_admin"]}}`],
      ['host pid namespace', `{"Image":"${IMAGE}","HostConfig":{"PidMode":"host"}}`],
      [
        'a device',
        `{"Image":"${IMAGE}","HostConfig":{"Devices":[{"PathOnHost":"/dev/mem","PathInContainer":"/dev/mem","CgroupPermissions":"rwm"}]}}`,
      ],
      ['chunked', `{"Image":"${IMAGE}","HostConfig":{"Privileged":true}}`, ['-H', 'Transfer-Encoding: chunked']],
      ['no content type', `{"Image":"${IMAGE}","HostConfig":{"Privileged":true}}`, ['-H', 'Content-Type:']],
    ];
    await Promise.all(
      bodies.map(async ([what, body, extra], i) => {
        const name = `body-${i}`;
        const args = extra?.[1] === 'Content-Type:' ? ['--data-binary', body, ...extra] : [...json(body), ...(extra ?? [])];
        const r = await curl(BUILDER, 'POST', `/containers/create?name=${name}`, args);
        await assertNotCreated(what, r, name);
      }),
    );
    // The control: within the limits, the same user creates.
    const ok = await curl(
      BUILDER,
      'POST',
      '/containers/create?name=body-ok',
      json(JSON.stringify({ Image: IMAGE, Cmd: ['true'], HostConfig: { Binds: [`${daemon.dir}/ok/a:/a:ro`], NetworkMode: 'none' } })),
    );
    assert.equal(ok.status, 201, ok.body);
    assert.ok((await daemon.containerNames()).includes('body-ok'));
  },
);

test('every request on a keep-alive connection is decided on its own', { skip }, async () => {
  const privileged = JSON.stringify({ Image: IMAGE, HostConfig: { Privileged: true } });
  const allowed = JSON.stringify({ Image: IMAGE, Cmd: ['true'], HostConfig: { NetworkMode: 'none' } });
  const w = ['-w', '%{http_code} %{num_connects}\\n', '-o', '/dev/null'];
  const u = (p: string) => `http://docker${p}`;
  const r = await run(
    'curl',
    [
      '-sS',
      '--unix-socket',
      gateway.socket,
      ...w,
      u('/_ping'),
      '--next',
      '--unix-socket',
      gateway.socket,
      ...w,
      ...json(privileged),
      u('/containers/create?name=ka-priv-1'),
      '--next',
      '--unix-socket',
      gateway.socket,
      ...w,
      u('/containers/json'),
      '--next',
      '--unix-socket',
      gateway.socket,
      ...w,
      ...json(allowed),
      u('/containers/create?name=ka-ok'),
      '--next',
      '--unix-socket',
      gateway.socket,
      ...w,
      ...json(privileged),
      u('/containers/create?name=ka-priv-2'),
    ],
    { as: BUILDER },
  ).output();
  assert.equal(r.code, 0, r.stderr);
  // One connection (num_connects 1, then 0 for every reused one) and one decision per request.
  assert.deepEqual(r.stdout.trim().split('\n'), ['200 1', '403 0', '200 0', '201 0', '403 0']);
  const names = await daemon.containerNames();
  assert.ok(names.includes('ka-ok'));
  assert.ok(!names.includes('ka-priv-1') && !names.includes('ka-priv-2'), names.join(' '));
});

/** A node process as `as` that writes `chunks` (raw HTTP) on one connection, one after each response head, and prints what it read. */
function rawClient(as: RunAs, chunks: string[]) {
  const script = `
    const s = require('net').connect(${JSON.stringify(gateway.socket)});
    const chunks = ${JSON.stringify(chunks)};
    let seen = '', heads = 0;
    s.on('connect', () => s.write(chunks.shift()));
    s.on('data', (d) => {
      seen += d; process.stdout.write(d);
      const n = seen.split('HTTP/1.1 ').length - 1;
      if (n > heads) { heads = n; if (chunks.length) s.write(chunks.shift()); else s.end(); }
    });
    s.on('error', (e) => process.stdout.write('\\nERROR ' + e.code));`;
  return run(process.execPath, ['-e', script], { as }).output();
}

const create = (name: string, body: string) =>
  `POST /containers/create?name=${name} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

test('pipelined requests, and an Upgrade on an ordinary endpoint, do not carry a refused request past the gateway', { skip }, async () => {
  const privileged = JSON.stringify({ Image: IMAGE, HostConfig: { Privileged: true } });
  const pipelined = await rawClient(BUILDER, [`GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n${create('pipe', privileged)}`]);
  assert.match(pipelined.stdout, /^HTTP\/1\.1 200/);
  const statuses = [...pipelined.stdout.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
  assert.ok(!statuses.includes('201'), pipelined.stdout);
  // The viewer may GET /_ping; asking to upgrade it must not turn the connection into an unchecked pipe.
  const upgraded = await rawClient(VIEWER, [
    'GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n',
    create('upgraded', JSON.stringify({ Image: IMAGE })),
  ]);
  assert.ok(!/HTTP\/1\.1 201/.test(upgraded.stdout), upgraded.stdout);
  const names = await daemon.containerNames();
  assert.ok(!names.includes('pipe') && !names.includes('upgraded'), names.join(' '));
});

test(
  'a process in the container named ci-runner is matched by who: { container: { name } }; other containers are not',
  { skip },
  async () => {
    const inContainer = async (name: string) => {
      const r = await daemon.docker([
        'run',
        '--rm',
        '--network',
        'none',
        '--name',
        name,
        '-v',
        `${join(daemon.dir, 'gw')}:/gw`,
        '-v',
        `${join(daemon.dir, 'bin')}:/c:ro`,
        IMAGE,
        '/c/client',
        '/gw/gw.sock',
        'GET',
        '/containers/json',
      ]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout;
    };
    const [runner, other, lookalike] = await Promise.all([inContainer('ci-runner'), inContainer('other'), inContainer('ci-runner2')]);
    assert.match(runner, /^HTTP\/1\.1 200/, runner);
    assert.match(runner, /"Names":\["\/ci-runner"\]/);
    for (const out of [other, lookalike]) {
      assert.match(out, /^HTTP\/1\.1 403/, out);
      assert.match(out, /secpolicy: /);
    }
  },
);
