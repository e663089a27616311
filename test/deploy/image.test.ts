/**
 * The image and the compose example, for real: `npm run image` builds `secpolicy:<version>`
 * offline into a private dockerd, the image answers `--version`, and the containers of
 * examples/compose/compose.yaml run on that daemon with `docker run` flags read from the compose
 * file itself (docker compose is not installed here; the file is parsed, so the two cannot drift).
 * Only the client containers' image and command are replaced: a static HTTP client in the
 * busybox test image stands in for the `docker` CLI, which needs a registry to get. Each client
 * is told apart by its container name, a third container is refused, and the decision log
 * names the rule and the container of each request.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parse } from 'yaml';
import { IMAGE, UNIX_HTTP_CLIENT, startDockerd } from '../helpers/dockerd.js';
import { needCommand, repoRoot, run } from '../helpers/index.js';
import { compileStatic } from '../helpers/runc.js';

const daemon = await startDockerd();
const skip = daemon.skip || needCommand('cc', 'npm', 'ldd');
const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
const tag = `secpolicy:${version}`;
const COMPOSE = join(repoRoot, 'examples', 'compose', 'compose.yaml');

let build: { code: number | null; stdout: string; stderr: string };

before(async () => {
  if (skip) return;
  // What an operator types; DOCKER_HOST names the daemon to load the image into.
  build = await run('npm', ['run', '--silent', 'image'], {
    cwd: repoRoot,
    env: { ...process.env, DOCKER_HOST: `unix://${daemon.socket}` },
  }).output();
});

after(() => daemon.stop());

test(
  'npm run image builds secpolicy:<version> offline into the daemon DOCKER_HOST names; its entrypoint is secpolicy',
  { skip },
  async (t) => {
    assert.equal(build.code, 0, build.stderr + build.stdout);
    const line = /^image: (\S+): (\d+) MB \((\d+) bytes\), built in ([\d.]+)s/m.exec(build.stdout);
    assert.ok(line, build.stdout);
    assert.equal(line[1], tag);
    t.diagnostic(line[0]);

    const inspect = await daemon.docker(['image', 'inspect', '--format', '{{json .Config}}', tag]);
    assert.equal(inspect.code, 0, inspect.stderr);
    const config = JSON.parse(inspect.stdout) as { Entrypoint: string[]; User: string; Labels: Record<string, string> };
    assert.deepEqual(config.Entrypoint, ['/usr/local/bin/secpolicy']);
    assert.equal(config.Labels['org.opencontainers.image.version'], version);

    const v = await daemon.docker(['run', '--rm', '--network', 'none', tag, '--version']);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.stdout, `${version}\n`);
    // No shell to break into: only what the gateway needs is in it.
    const shell = await daemon.docker(['run', '--rm', '--network', 'none', '--entrypoint', '/bin/sh', tag, '-c', 'true']);
    assert.notEqual(shell.code, 0);
  },
);

/** `${NAME:-default}` as compose reads it, from `vars` (unset names take the default). */
function interpolate(value: string, vars: Record<string, string>): string {
  return value.replace(/\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, fallback?: string) => vars[name] ?? fallback ?? '');
}

interface Service {
  image: string;
  container_name?: string;
  command?: string[];
  pid?: string;
  cgroup?: string;
  network_mode?: string;
  read_only?: boolean;
  volumes?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  restart?: string;
}

/** The `docker run` arguments (before the image) of a compose service; a key this does not translate fails the test. */
function runFlags(service: Service, vars: Record<string, string>): string[] {
  const known = [
    'image',
    'container_name',
    'command',
    'pid',
    'cgroup',
    'network_mode',
    'read_only',
    'volumes',
    'healthcheck',
    'depends_on',
    'restart',
  ];
  for (const key of Object.keys(service)) assert.ok(known.includes(key), `compose key ${key} has no docker run equivalent here`);
  const flags = ['-d'];
  if (service.container_name) flags.push('--name', service.container_name);
  if (service.pid) flags.push('--pid', service.pid);
  if (service.cgroup) flags.push('--cgroupns', service.cgroup);
  if (service.network_mode) flags.push('--network', service.network_mode);
  if (service.read_only) flags.push('--read-only');
  for (const volume of service.volumes ?? []) {
    const [source, ...rest] = interpolate(volume, vars).split(':');
    // Relative sources are relative to the compose file, as compose reads them.
    flags.push('-v', [source!.startsWith('.') ? resolve(dirname(COMPOSE), source!) : source, ...rest].join(':'));
  }
  return flags;
}

test(
  'examples/compose: one gateway socket, containers told apart by name, a third refused, and the decision log naming them',
  { skip },
  async (t) => {
    assert.equal(build.code, 0, 'the image was built');
    const compose = parse(readFileSync(COMPOSE, 'utf8')) as { services: Record<string, Service> };
    const { gateway, dashboard, runner } = compose.services;
    assert.ok(gateway && dashboard && runner, 'the services are gateway, dashboard and runner');
    // The default image is the one `npm run image` builds for this version.
    assert.equal(interpolate(gateway.image, {}), tag);

    const socketDir = join(daemon.dir, 'secpolicy-gateway');
    mkdirSync(socketDir, { mode: 0o755 });
    const vars = { DOCKER_SOCKET: daemon.socket, SECPOLICY_SOCKET_DIR: socketDir };
    const bin = join(daemon.dir, 'bin');
    compileStatic(UNIX_HTTP_CLIENT, join(bin, 'client'));

    const started = await daemon.docker(['run', ...runFlags(gateway, vars), interpolate(gateway.image, vars), ...gateway.command!]);
    assert.equal(started.code, 0, started.stderr);
    const name = gateway.container_name!;
    // depends_on: service_healthy: the clients start once the gateway's health check passes.
    for (;;) {
      const state = await daemon.docker(['inspect', '--format', '{{.State.Running}}', name]);
      assert.equal(state.stdout.trim(), 'true', (await daemon.docker(['logs', name])).stderr);
      if (existsSync(join(socketDir, 'docker.sock'))) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const health = await daemon.docker(['exec', name, ...gateway.healthcheck!.test.slice(1)]);
    assert.equal(health.code, 0, `the health check passes: ${health.stderr}`);
    assert.equal(dashboard.depends_on?.gateway?.condition, 'service_healthy');

    /** One request from a client container of the compose file (its flags, the test client instead of the docker CLI). */
    const request = async (service: Service, method: string, path: string, body?: unknown, as?: string) => {
      const flags = runFlags(service, vars).filter((f) => f !== '-d');
      if (as) flags[flags.indexOf('--name') + 1] = as;
      const r = await daemon.docker([
        'run',
        '--rm',
        ...flags,
        '-v',
        `${bin}:/c:ro`,
        IMAGE,
        '/c/client',
        '/var/run/docker.sock',
        method,
        path,
        ...(body === undefined ? [] : [JSON.stringify(body)]),
      ]);
      assert.equal(r.code, 0, r.stderr);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(r.stdout)?.[1]);
      t.diagnostic(`${as ?? service.container_name}: ${method} ${path} -> ${status}`);
      return { status, body: r.stdout };
    };

    // dashboard: reads, never creates.
    const list = await request(dashboard, 'GET', '/v1.41/containers/json');
    assert.equal(list.status, 200, list.body);
    assert.match(list.body, /"Names":\["\/secpolicy-gateway"\]/);
    const looks = { Image: IMAGE, Cmd: ['true'], HostConfig: { NetworkMode: 'none' } };
    assert.equal((await request(dashboard, 'POST', '/containers/create?name=by-dashboard', looks)).status, 403);

    // runner: creates and starts within limits; a privileged container or a host bind is refused.
    const created = await request(runner, 'POST', '/containers/create?name=by-runner', looks);
    assert.equal(created.status, 201, created.body);
    const id = /"Id":"([0-9a-f]{64})"/.exec(created.body)![1]!;
    assert.equal((await request(runner, 'POST', `/containers/${id}/start`)).status, 204);
    const privileged = { ...looks, HostConfig: { NetworkMode: 'none', Privileged: true } };
    assert.equal((await request(runner, 'POST', '/containers/create?name=runner-privileged', privileged)).status, 403);
    const hostBind = { ...looks, HostConfig: { NetworkMode: 'none', Binds: ['/:/host'] } };
    assert.equal((await request(runner, 'POST', '/containers/create?name=runner-bind', hostBind)).status, 403);

    // A third container with the same socket mounted, and a name close to an allowed one: refused.
    for (const other of ['intruder', 'runner2']) {
      const r = await request(runner, 'GET', '/_ping', undefined, other);
      assert.equal(r.status, 403, r.body);
      assert.match(r.body, /secpolicy: /);
    }
    const names = await daemon.containerNames();
    for (const refused of ['by-dashboard', 'runner-privileged', 'runner-bind']) assert.ok(!names.includes(refused), names.join(' '));

    // The decision log (--log -, so `docker logs`): each request with its rule and the peer's container.
    const logs = await daemon.docker(['logs', name]);
    const entries = logs.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map(
        (l) =>
          JSON.parse(l) as {
            rule: string | null;
            allowed: boolean;
            method: string;
            path: string;
            peer: { container: { id: string; name?: string } | null };
          },
      );
    const decided = entries.map(
      (e) =>
        `${e.peer.container?.name ?? '?'}: ${e.rule ?? '-'} ${e.allowed ? 'allowed' : 'denied'} ${e.method} ${e.path.replace(/[0-9a-f]{64}/, 'ID')}`,
    );
    for (const expected of [
      'dashboard: dashboard allowed GET /v1.41/containers/json',
      'dashboard: dashboard denied POST /containers/create',
      'runner: runner allowed POST /containers/create',
      'runner: runner allowed POST /containers/ID/start',
      'runner: runner denied POST /containers/create',
      'intruder: - denied GET /_ping',
      'runner2: - denied GET /_ping',
    ]) {
      assert.ok(decided.includes(expected), `log has "${expected}":\n${decided.join('\n')}`);
    }
    for (const e of entries)
      assert.match(e.peer.container?.id ?? '', /^[0-9a-f]{64}$/, 'every peer was a container, and the log says which');
    // The rules name containers, so each line names the container as the daemon calls it.
    for (const line of decided) t.diagnostic(`log: ${line}`);

    // Why `pid: host`: the same gateway in a pid namespace of its own cannot see its peers'
    // processes, so no container is known, and unknown is never allowed.
    const privateDir = join(daemon.dir, 'gateway-private-pid');
    mkdirSync(privateDir, { mode: 0o755 });
    const privateVars = { ...vars, SECPOLICY_SOCKET_DIR: privateDir };
    const flags = runFlags(gateway, privateVars);
    flags.splice(flags.indexOf('--pid'), 2);
    flags[flags.indexOf('--name') + 1] = 'gateway-private-pid';
    const second = await daemon.docker(['run', ...flags, interpolate(gateway.image, vars), ...gateway.command!]);
    assert.equal(second.code, 0, second.stderr);
    while (!existsSync(join(privateDir, 'docker.sock'))) await new Promise((r) => setTimeout(r, 100));
    const blind = await request(
      { ...dashboard, volumes: dashboard.volumes!.map((v) => interpolate(v, privateVars)) },
      'GET',
      '/containers/json',
    );
    assert.equal(blind.status, 403, blind.body);
    assert.match(blind.body, /secpolicy: /);
  },
);
