/**
 * The object checked is the object acted on: for a rule with `docker:` limits, start,
 * restart, attach and exec start are checked against the daemon's own inspect, and then
 * forwarded to the full Id that inspect returned, not to the name (or Id prefix) the
 * client used. A client allowed to rename containers could otherwise swap the target
 * between the inspect and the forward. A real dockerd behind a recording relay (a byte
 * pipe that notes each request line the gateway sends, and can hold one request back
 * while the test renames containers) makes the race deterministic: the relay holds the
 * gateway's start until the swap is done. A start, restart or attach of a container that
 * does not exist is answered as the daemon answers it (404), without forwarding.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { IMAGE, startDockerd, type GatewayProcess } from '../helpers/dockerd.js';
import { curlAs, json, startDockerGateway } from './docker-fixture.js';
import { needCommand, run, type RunAs } from '../helpers/index.js';

const daemon = await startDockerd();
const skip = daemon.skip || needCommand('setpriv', 'curl');

/** The restricted user: may create, rename, start and attach to containers without host binds. */
const USER: RunAs = { uid: 1, gid: 1 };

let gateway: GatewayProcess;
let relay: net.Server;
/** Every request line the gateway sent upstream, in order. */
const seen: string[] = [];
/** When set, a request line it matches is held back (once) until `hold.until()` resolves. */
let hold: { match: RegExp; until: () => Promise<void> } | undefined;

/**
 * A relay between the gateway and dockerd: bytes both ways, unchanged. Request lines are
 * read from the gateway's side (a request head reaches it in one write); a chunk with a
 * held line waits, and everything after it on that connection with it.
 */
function startRelay(path: string, target: string): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.createConnection({ path: target, allowHalfOpen: true });
    let queue = Promise.resolve();
    client.on('data', (chunk: Buffer) => {
      const lines = [...chunk.toString('latin1').matchAll(/^([A-Z]+ \/\S* HTTP\/1\.[01])\r$/gm)].map((m) => m[1]!);
      seen.push(...lines);
      const h = hold;
      const held = h !== undefined && lines.some((l) => h.match.test(l));
      if (held) hold = undefined;
      queue = queue.then(async () => {
        if (held) await h.until();
        upstream.write(chunk);
      });
    });
    client.on('end', () => void queue.then(() => upstream.end()));
    upstream.pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    // What the daemon wrote is flushed to the gateway before its side closes.
    upstream.on('close', () => client.destroySoon());
  });
  return new Promise((resolve) => server.listen(path, () => resolve(server)));
}

before(async () => {
  if (skip) return;
  relay = await startRelay(join(daemon.dir, 'relay.sock'), daemon.socket);
  gateway = await startDockerGateway(
    daemon,
    `version: 1
api: docker
rules:
  - name: limited
    who: { uid: 1 }
    allow: ["GET /**", "HEAD /**", "POST /containers/create", "POST /containers/*/start", "POST /containers/*/restart",
            "POST /containers/*/rename", "POST /containers/*/attach", "POST /containers/*/wait", "POST /containers/*/exec",
            "POST /exec/*/start", "DELETE /containers/*"]
    docker: { privileged: false, hostNamespaces: false, capAdd: [], devices: false, binds: [] }
`,
    { target: join(daemon.dir, 'relay.sock') },
  );
});

after(async () => {
  await gateway?.stop();
  relay?.close();
  await daemon.stop();
});

/** A request through the gateway as the restricted user. */
function asUser(method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
  return curlAs(gateway.socket, USER, method, path, body === undefined ? [] : json(body));
}

/** The daemon's own view of a container (direct socket). */
async function inspect(name: string): Promise<{ Id: string; Name: string; State: { StartedAt: string } }> {
  const r = await daemon.api('GET', `/containers/${name}/json`);
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body);
}

const NEVER_STARTED = '0001-01-01T00:00:00Z';

test('a container swapped by rename between the inspect and the start: the container inspected is the one started', { skip }, async () => {
  // The user's own container, within the limits; root's, binding the host's / (made behind the gateway).
  const own = await asUser('POST', '/v1.41/containers/create?name=app', JSON.stringify({ Image: IMAGE, Cmd: ['sleep', '30'] }));
  assert.equal(own.status, 201, own.body);
  const ownId = (JSON.parse(own.body) as { Id: string }).Id;
  const root = await daemon.api('POST', '/containers/create?name=roothost', {
    Image: IMAGE,
    Cmd: ['sleep', '30'],
    HostConfig: { Binds: ['/:/host'], NetworkMode: 'none' },
  });
  assert.equal(root.status, 201, root.body);
  const rootId = (JSON.parse(root.body) as { Id: string }).Id;
  // Its start is refused when asked by name: the inspect sees the host bind.
  const refused = await asUser('POST', '/v1.41/containers/roothost/start');
  assert.equal(refused.status, 403, refused.body);
  // The start of "app" is held upstream after its inspect passed, while the user swaps the names.
  let swapped: Promise<void> | undefined;
  hold = {
    match: /^POST \/v1\.41\/containers\/[^/]+\/start /,
    until: () =>
      (swapped = (async () => {
        assert.equal((await asUser('POST', '/v1.41/containers/app/rename?name=app-old')).status, 204);
        assert.equal((await asUser('POST', '/v1.41/containers/roothost/rename?name=app')).status, 204);
      })()),
  };
  const from = seen.length;
  const started = await asUser('POST', '/v1.41/containers/app/start');
  assert.ok(swapped !== undefined, 'the relay never held the start');
  await swapped;
  assert.equal(started.status, 204, started.body);
  assert.equal((await inspect(rootId)).Name, '/app', 'the swap happened');
  assert.equal((await inspect(rootId)).State.StartedAt, NEVER_STARTED, 'the container binding the host / was started');
  assert.notEqual((await inspect(ownId)).State.StartedAt, NEVER_STARTED, 'the container inspected was not started');
  const starts = seen.slice(from).filter((l) => / \/v1\.41\/containers\/[^/]+\/start /.test(l));
  assert.deepEqual(starts, [`POST /v1.41/containers/${ownId}/start HTTP/1.1`]);
});

test(
  'start, attach and restart by name or Id prefix, and exec start, are forwarded to the full Id the inspect returned',
  { skip },
  async () => {
    const made = await asUser('POST', '/v1.41/containers/create?name=talk', JSON.stringify({ Image: IMAGE, Cmd: ['echo', 'said'] }));
    assert.equal(made.status, 201, made.body);
    const id = (JSON.parse(made.body) as { Id: string }).Id;
    const upstream = async (method: string, path: string, action: string): Promise<{ status: number; body: string; lines: string[] }> => {
      const from = seen.length;
      const r = await asUser(method, path);
      return { ...r, lines: seen.slice(from).filter((l) => l.includes(`/${action}`)) };
    };
    const started = await upstream('POST', `/v1.41/containers/${id.slice(0, 12)}/start`, 'start');
    assert.equal(started.status, 204, started.body);
    assert.deepEqual(started.lines, [`POST /v1.41/containers/${id}/start HTTP/1.1`]);
    assert.equal((await daemon.api('POST', `/containers/${id}/wait`)).status, 200);
    // An attach that replays the output (no upgrade: the logs, then the end).
    const attached = await upstream('POST', '/v1.41/containers/talk/attach?logs=1&stdout=1', 'attach');
    assert.equal(attached.status, 200, attached.body);
    assert.match(attached.body, /said/);
    assert.deepEqual(attached.lines, [`POST /v1.41/containers/${id}/attach?logs=1&stdout=1 HTTP/1.1`]);
    const restarted = await upstream('POST', '/containers/talk/restart?t=0', 'restart');
    assert.equal(restarted.status, 204, restarted.body);
    assert.deepEqual(restarted.lines, [`POST /containers/${id}/restart?t=0 HTTP/1.1`]);
    // An exec in a running container with the docker CLI (an upgraded exec start): its full Id upstream.
    const sleeper = await daemon.docker(['run', '-d', '--name', 'sleeper', '--network', 'none', IMAGE, 'sleep', '60']);
    assert.equal(sleeper.code, 0, sleeper.stderr);
    const from = seen.length;
    const exec = await daemon.docker(['exec', 'sleeper', 'echo', 'inside'], { host: gateway.socket, as: USER });
    assert.equal(exec.code, 0, exec.stderr);
    assert.equal(exec.stdout, 'inside\n');
    const execStart = seen.slice(from).filter((l) => /\/exec\/[^/]+\/start /.test(l));
    assert.equal(execStart.length, 1, execStart.join(' | '));
    assert.match(execStart[0]!, /^POST \/v[0-9.]+\/exec\/[0-9a-f]{64}\/start HTTP\/1\.1$/);
  },
);

test('a start, restart, attach or exec start of an object that does not exist is answered as the daemon answers it', { skip }, async () => {
  const UPGRADE = ['-H', 'Connection: Upgrade', '-H', 'Upgrade: tcp'];
  const cases: Array<[string, string, string | undefined, string[]]> = [
    ['POST', '/v1.41/containers/nosuch/start', undefined, []],
    ['POST', '/containers/nosuch/restart', undefined, []],
    ['POST', '/v1.41/containers/nosuch/attach?stream=1&stdout=1', undefined, []],
    ['POST', '/v1.41/containers/nosuch/attach?stream=1&stdout=1', undefined, UPGRADE],
    ['POST', '/v1.41/exec/nosuchexec/start', '{"Detach":true}', []],
  ];
  for (const [method, path, body, headers] of cases) {
    const what = `${method} ${path}${headers.length ? ' (upgrade)' : ''}`;
    const direct = await daemon.api(method, path, body === undefined ? undefined : JSON.parse(body));
    assert.equal(direct.status, 404, `${what}: the daemon's own answer: ${direct.body}`);
    const from = seen.length;
    const data = body === undefined ? [] : ['-H', 'Content-Type: application/json', '--data-binary', body];
    const r = await run(
      'curl',
      [
        '-sS',
        '--unix-socket',
        gateway.socket,
        '-X',
        method,
        '-w',
        '\n%{http_code} %{content_type}',
        ...headers,
        ...data,
        `http://docker${path}`,
      ],
      { as: USER },
    ).output();
    const at = r.stdout.lastIndexOf('\n');
    assert.equal(r.stdout.slice(at + 1), `404 ${direct.headers['content-type']}`, `${what}: ${r.stdout}${r.stderr}`);
    const answer = r.stdout.slice(0, at);
    if (direct.headers['content-type'] === 'application/json') assert.deepEqual(JSON.parse(answer), JSON.parse(direct.body), what);
    else assert.equal(answer, direct.body, what);
    assert.match(answer, /No such (container: nosuch|exec instance: nosuchexec)/);
    const forwarded = seen.slice(from).filter((l) => l.startsWith(`${method} `));
    assert.deepEqual(forwarded, [], `${what} was forwarded`);
  }
});
