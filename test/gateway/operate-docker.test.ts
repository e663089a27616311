/**
 * Operating the gateway in front of a real dockerd (offline, from test/helpers/dockerd.ts):
 * a SIGHUP reload while a container wait and an events stream are open through it, and
 * docker-socket-proxy's own permission matrix (its tests/test_service.py: which docker CLI
 * commands are allowed and which forbidden for a set of variables) run with the real
 * docker CLI through policies made by `secpolicy convert docker-socket-proxy`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { IMAGE, startDockerd } from '../helpers/dockerd.js';
import { needCommand } from '../helpers/index.js';
import { secpolicy } from '../cli/cli.js';
import { logHas, outputMatches, RawConnection, startListening } from './operate-helpers.js';

const daemon = await startDockerd();
const skip = daemon.skip || needCommand('docker');
const me = process.getuid!();
let n = 0;

before(async () => {
  if (skip) return;
  // A running container, like the proxy container docker-socket-proxy's tests point their commands at.
  const r = await daemon.docker(['run', '-d', '--name', 'tc', '--network', 'none', IMAGE, 'sleep', '1000']);
  assert.equal(r.code, 0, r.stderr);
});

after(() => (skip ? undefined : daemon.stop()));

function file(name: string, text: string): string {
  const path = join(daemon.dir, name);
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

test(
  'SIGHUP with a container wait and an events stream in flight: both go on to their end; new requests, old connections included, follow the new policy',
  { skip },
  async (t) => {
    const created = await daemon.docker(['run', '-d', '--name', 'waited', '--network', 'none', IMAGE, 'sleep', '1000']);
    assert.equal(created.code, 0, created.stderr);
    const policy = file('reload.yaml', `version: 1\napi: docker\nrules:\n  - name: v1\n    who: { uid: ${me} }\n    allow: ["* /**"]\n`);
    const log = join(daemon.dir, 'reload.log');
    const gw = await startListening({ socket: join(daemon.dir, 'reload.sock'), target: daemon.socket, policy, extra: ['--log', log] });
    t.after(() => gw.stop());
    const timeline: string[] = [];
    const start = performance.now();
    const at = (what: string): void => void timeline.push(`${(performance.now() - start).toFixed(0)} ms: ${what}`);

    const old = await RawConnection.open(gw.socket);
    t.after(() => old.close());
    assert.equal((await old.request('GET', '/v1.41/containers/json')).status, 200);
    at('old connection: GET /containers/json 200 under v1');

    // The wait: its head comes at once, its body when the container exits. The reload waits
    // for the head, so the wait is decided under v1 whatever order the two connections take.
    let waitHead: (status: number) => void = () => {};
    const waitOpen = new Promise<number>((resolve) => (waitHead = resolve));
    const wait = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ socketPath: gw.socket, method: 'POST', path: '/v1.41/containers/waited/wait' }, (res) => {
        at(`wait: head ${res.statusCode} under v1, body pending`);
        waitHead(res.statusCode!);
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      req.end();
    });
    wait.catch(() => {});
    assert.equal(await Promise.race([waitOpen, wait.then((w) => w.status)]), 200);
    // The events stream, filtered to the container.
    const filters = encodeURIComponent(JSON.stringify({ container: ['waited'] }));
    let events = '';
    let onEvent: () => void = () => {};
    const streamOpen = new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.get({ socketPath: gw.socket, path: `/v1.41/events?filters=${filters}` }, (res) => {
        res.on('data', (d) => {
          events += d;
          onEvent();
        });
        resolve(res);
      });
      req.on('error', reject);
    });
    const stream = await streamOpen;
    assert.equal(stream.statusCode, 200);
    at('events stream: 200 under v1');

    file(
      'reload.yaml',
      `version: 1\napi: docker\nrules:\n  - name: v2\n    who: { uid: ${me} }\n    allow: ["GET /_ping", "GET /version"]\n`,
    );
    gw.child.kill('SIGHUP');
    await outputMatches(gw, (o) => o.includes('SIGHUP: reloaded'));
    at('SIGHUP: reloaded to v2 (no containers, no events)');
    assert.equal((await old.request('GET', '/v1.41/containers/json')).status, 403);
    assert.equal((await old.request('GET', '/v1.41/version')).status, 200);
    at('old connection: GET /containers/json 403, GET /version 200 under v2');
    const fresh = await RawConnection.open(gw.socket);
    t.after(() => fresh.close());
    assert.equal((await fresh.request('GET', `/v1.41/events?filters=${filters}`)).status, 403);
    assert.equal((await fresh.request('POST', '/v1.41/containers/waited/wait')).status, 403);
    at('new connection: events 403, wait 403 under v2');

    // The container ends (straight through the daemon): the old stream and the old wait see it.
    const died = new Promise<void>((resolve) => {
      onEvent = () => {
        if (/"(?:status|Action)":"die"/.test(events)) resolve();
      };
      onEvent();
    });
    const killed = await daemon.api('POST', '/containers/waited/kill');
    assert.equal(killed.status, 204);
    at('container killed through the daemon directly');
    await died;
    at('events stream (opened under v1) delivered the die event');
    const waited = await wait;
    assert.equal(waited.status, 200);
    assert.equal(JSON.parse(waited.body).StatusCode, 137);
    at(`wait (opened under v1) finished: 200 ${waited.body.trim()}`);
    stream.destroy();

    // Its entry is written as its answer closes, on the gateway's next turn: it may follow
    // the last byte the client read.
    const isWait = (e: { path: string | null; rule: string | null }): boolean =>
      e.path === '/v1.41/containers/waited/wait' && e.rule === 'v1';
    const entries = await logHas(log, (es) => es.some(isWait), 'the wait decided under v1');
    const waitEntry = entries.find(isWait);
    assert.ok(waitEntry, JSON.stringify(entries));
    assert.equal(waitEntry.allowed, true);
    assert.equal(waitEntry.status, 200);
    for (const line of ['reload timeline:', ...timeline]) t.diagnostic(line);
  },
);

/**
 * docker-socket-proxy's tests/test_service.py, case by case: the variables, the docker
 * commands that must succeed and those that must fail. Their `alpine` is the offline
 * test image here; their test container (the proxy's own) is `tc`, a running container.
 */
const MATRIX: Array<{ name: string; env: Record<string, string>; allowed: string[][]; forbidden: string[][] }> = [
  {
    name: 'default',
    env: {},
    allowed: [['version']],
    forbidden: [
      ['pull', IMAGE],
      ['--rm', IMAGE, '--name', 'tc'],
      ['logs', 'tc'],
      ['wait', 'tc'],
      ['rm', '-f', 'tc'],
      ['restart', 'tc'],
      ['network', 'ls'],
      ['config', 'ls'],
      ['service', 'ls'],
      ['stack', 'ls'],
      ['secret', 'ls'],
      ['plugin', 'ls'],
      ['info'],
      ['system', 'info'],
      ['build', '.'],
      ['buildx build', '.'],
      ['swarm', 'init'],
    ],
  },
  {
    name: 'containers',
    env: { CONTAINERS: '1' },
    allowed: [
      ['logs', 'tc'],
      ['inspect', 'tc'],
    ],
    forbidden: [
      ['wait', 'tc'],
      ['run', '--rm', IMAGE],
      ['rm', '-f', 'tc'],
      ['restart', 'tc'],
    ],
  },
  {
    name: 'post',
    env: { POST: '1' },
    allowed: [],
    forbidden: [
      ['rm', '-f', 'tc'],
      ['pull', IMAGE],
      ['run', '--rm', IMAGE],
      ['network', 'create', 'foobar'],
    ],
  },
  {
    name: 'network_post',
    env: { POST: '1', NETWORKS: '1' },
    allowed: [['network', 'ls']],
    // Stricter: under the rule's docker: limits only what the Docker profile models goes
    // through, and it does not model network creation (drivers and options reach the host).
    forbidden: [['network', 'create', 'foo']],
  },
  {
    name: 'exec',
    env: { CONTAINERS: '1', EXEC: '1', POST: '1' },
    allowed: [['exec', 'tc', 'ls']],
    forbidden: [],
  },
];

test(
  "docker-socket-proxy's permission matrix through converted policies, with the real docker CLI on a real dockerd",
  { skip },
  async (t) => {
    let passed = 0;
    let refusedByGateway = 0;
    let failingAnyway = 0;
    for (const c of MATRIX) {
      const converted = await secpolicy(['convert', 'docker-socket-proxy', ...Object.entries(c.env).map(([k, v]) => `${k}=${v}`)], {
        env: { CONTAINERS: '', POST: '', EXEC: '', NETWORKS: '', IMAGES: '' },
      });
      assert.equal(converted.code, 0, converted.stderr);
      const policy = file(`dsp-${c.name}.yaml`, converted.stdout);
      const gw = await startListening({ socket: join(daemon.dir, `dsp${n++}.sock`), target: daemon.socket, policy });
      try {
        for (const args of c.allowed) {
          const r = await daemon.docker(args, { host: gw.socket });
          assert.equal(r.code, 0, `${c.name}: docker ${args.join(' ')} must be allowed: ${r.stderr}`);
          passed++;
        }
        for (const args of c.forbidden) {
          const r = await daemon.docker(args, { host: gw.socket });
          assert.notEqual(r.code, 0, `${c.name}: docker ${args.join(' ')} must be forbidden: ${r.stdout}`);
          if (/secpolicy: docker-socket-proxy: /.test(r.stderr)) refusedByGateway++;
          else {
            // Not the gateway's answer: it must fail the same way straight on the daemon (a usage error, no registry offline).
            const direct = await daemon.docker(args);
            assert.notEqual(
              direct.code,
              0,
              `${c.name}: docker ${args.join(' ')} failed through the gateway without its refusal: ${r.stderr}`,
            );
            failingAnyway++;
          }
          passed++;
        }
      } finally {
        await gw.stop();
      }
    }
    const total = MATRIX.reduce((s, c) => s + c.allowed.length + c.forbidden.length, 0);
    assert.equal(passed, total);
    t.diagnostic(
      `docker-socket-proxy matrix: ${passed}/${total} as expected (${refusedByGateway} forbidden commands refused by the gateway, ${failingAnyway} fail on the daemon directly too)`,
    );
  },
);

test(
  'where the converted policy is stricter: container files need POST besides CONTAINERS; an exec needs EXEC besides CONTAINERS and POST; networks are not created under docker limits',
  { skip },
  async () => {
    const read = await secpolicy(['convert', 'docker-socket-proxy', 'CONTAINERS=1'], { env: { POST: '', EXEC: '' } });
    const readOnly = await startListening({
      socket: join(daemon.dir, `dsp${n++}.sock`),
      target: daemon.socket,
      policy: file('strict-read.yaml', read.stdout),
    });
    try {
      const cp = await daemon.docker(['cp', 'tc:/etc/hostname', '-'], { host: readOnly.socket });
      assert.notEqual(cp.code, 0);
      assert.match(cp.stderr, /secpolicy: docker-socket-proxy: .*archive/);
      assert.equal((await daemon.docker(['cp', 'tc:/etc/hostname', '-'])).code, 0);
    } finally {
      await readOnly.stop();
    }
    const write = await secpolicy(['convert', 'docker-socket-proxy', 'CONTAINERS=1', 'POST=1'], { env: { EXEC: '' } });
    const readWrite = await startListening({
      socket: join(daemon.dir, `dsp${n++}.sock`),
      target: daemon.socket,
      policy: file('strict-write.yaml', write.stdout),
    });
    try {
      const exec = await daemon.docker(['exec', 'tc', 'ls'], { host: readWrite.socket });
      assert.notEqual(exec.code, 0);
      assert.match(exec.stderr, /secpolicy: docker-socket-proxy: POST .*\/exec is denied/);
      const privileged = await daemon.docker(['create', '--privileged', '--network', 'none', IMAGE, 'true'], { host: readWrite.socket });
      assert.notEqual(privileged.code, 0);
      assert.match(privileged.stderr, /secpolicy: docker-socket-proxy: .*privileged/i);
    } finally {
      await readWrite.stop();
    }
    const networks = await secpolicy(['convert', 'docker-socket-proxy', 'POST=1', 'NETWORKS=1'], { env: { CONTAINERS: '', EXEC: '' } });
    const networkWrite = await startListening({
      socket: join(daemon.dir, `dsp${n++}.sock`),
      target: daemon.socket,
      policy: file('strict-network.yaml', networks.stdout),
    });
    try {
      const create = await daemon.docker(['network', 'create', 'strict'], { host: networkWrite.socket });
      assert.notEqual(create.code, 0);
      assert.match(create.stderr, /secpolicy: docker-socket-proxy: POST \/networks\/create is refused for a rule with docker limits/);
      assert.equal((await daemon.docker(['network', 'ls'], { host: networkWrite.socket })).code, 0);
    } finally {
      await networkWrite.stop();
    }
  },
);
