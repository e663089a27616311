/**
 * The Docker profile's model against the API specification it was derived from
 * (test/fixtures/docker-api-1.41.json: moby's api/swagger.yaml of Docker 20.10.24, trimmed
 * by test/fixtures/docker-api-extract.py to the paths and the modelled request bodies):
 * every path of the spec has an entry in the endpoint table and no entry is made up; every
 * field of a modelled body is in the model with the spec's type, and the model's only
 * fields beyond the spec are the ones the daemon's decoders read that the spec leaves out.
 * Then the routing of requests, decided without a daemon.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CHECKED_FIELDS, DockerChecker } from '../../src/gateway/docker.js';
import { ENDPOINTS, findEndpoint } from '../../src/gateway/docker-endpoints.js';
import { API_WINDOW, BODIES, HOST_CONFIG } from '../../src/gateway/docker-model.js';
import { DockerProfile, forwardSegments } from '../../src/gateway/docker-request.js';
import { compareVersions, pathVersion } from '../../src/gateway/docker-version.js';
import { parseGatewayPolicy } from '../../src/gateway/policy.js';
import type { GoType } from '../../src/gateway/gojson.js';

const SPEC = JSON.parse(readFileSync(fileURLToPath(new URL('../../../test/fixtures/docker-api-1.41.json', import.meta.url)), 'utf8')) as {
  source: string;
  paths: Record<string, string[]>;
  bodies: Record<string, Shape>;
};
type Shape = string | { object: Record<string, Shape> } | { array: Shape } | { map: Shape | 'any' };

/** A model type as the spec extract writes shapes; numbers are `integer` (every modelled number is one in the spec). */
function shape(type: GoType): Shape {
  switch (type.k) {
    case 'ptr':
      return shape(type.to);
    case 'struct':
      if (Object.keys(type.fields).length === 0) return { map: 'any' }; // struct{}: the spec's free-form object
      return { object: Object.fromEntries(Object.entries(type.fields).map(([k, t]) => [k, shape(t)])) };
    case 'slice':
      return { array: shape(type.of) };
    case 'map':
      return { map: shape(type.of) };
    case 'strslice':
      return { array: 'string' };
    case 'string':
      return 'string';
    case 'bool':
      return 'boolean';
    case 'number':
      return 'integer';
  }
}

/** Fields the daemon decodes that the spec does not list, per body (path inside the body). */
const BEYOND_SPEC: Record<string, string[]> = {
  // The ContainerConfigWrapper: a deprecated top-level Cpuset, and the embedded host config.
  create: [
    'Cpuset',
    ...Object.keys(HOST_CONFIG),
    'NetworkingConfig.EndpointsConfig.*.DNSNames',
    'NetworkingConfig.EndpointsConfig.*.GwPriority',
  ],
  exec: ['Detach'],
  execStart: ['ConsoleSize'],
};

function without(s: Shape, drop: string[], at = ''): Shape {
  if (typeof s === 'string') return s;
  if ('object' in s) {
    const out: Record<string, Shape> = {};
    for (const [k, v] of Object.entries(s.object)) {
      const path = at ? `${at}.${k}` : k;
      if (!drop.includes(path)) out[k] = without(v, drop, path);
    }
    return { object: out };
  }
  if ('map' in s) return s.map === 'any' ? s : { map: without(s.map, drop, `${at}.*`) };
  return { array: without(s.array, drop, at) };
}

test(`the spec extract comes from moby's swagger (${SPEC.source})`, () => {
  assert.match(SPEC.source, /^moby\/moby v20\.10\.\d+ api\/swagger\.yaml \(API 1\.41\)/);
  assert.equal(API_WINDOW.max, '1.41', 'the newest version modelled is the one of the extract');
});

test('every body the profile models has the fields and types of the spec, and beyond it only what the daemon decodes', () => {
  const names: Record<string, string> = {
    create: 'create',
    update: 'update',
    exec: 'exec',
    execStart: 'execStart',
    volumeCreate: 'volumeCreate',
  };
  assert.deepEqual(Object.keys(BODIES).sort(), Object.keys(names).sort());
  for (const [model, type] of Object.entries(BODIES)) {
    const spec = SPEC.bodies[names[model]!];
    assert.ok(spec, `${model} is in the extract`);
    assert.deepEqual(without(shape(type), BEYOND_SPEC[model] ?? []), spec, `${model}: the model differs from the spec`);
  }
});

test('every endpoint of the spec is in the table, and the table has none the spec does not', () => {
  const spec = Object.entries(SPEC.paths).flatMap(([path, methods]) => methods.map((m) => `${m} ${path}`));
  const table = ENDPOINTS.map((e) => `${e.method} ${e.path}`);
  assert.deepEqual([...table].sort(), [...spec].sort());
  assert.equal(new Set(table).size, table.length, 'no endpoint twice');
});

test('every field the model says is checked is read by the checker, and every field the checker reads is in the model', () => {
  const checked = new Set<string>();
  const walk = (type: GoType, at: string): void => {
    if (type.k === 'ptr') return walk(type.to, at);
    if (type.k === 'slice' || type.k === 'map') return walk(type.of, at);
    if (type.k !== 'struct') return;
    for (const [name, field] of Object.entries(type.fields)) {
      const path = (at ? `${at}.${name}` : name).replace(/^HostConfig\./, '');
      if (field.v === 'check') checked.add(path);
      assert.ok(field.v !== undefined, `${path} has no verdict`);
      walk(field, at ? `${at}.${name}` : name);
    }
  };
  for (const type of Object.values(BODIES)) walk(type, '');
  assert.deepEqual([...checked].sort(), [...CHECKED_FIELDS].sort());
});

test('endpoints: placeholders take one or more segments, literals are matched without regard to case, HEAD follows GET', () => {
  const find = (method: string, path: string) => {
    const r = findEndpoint(method, path.slice(1).split('/'));
    return 'why' in r ? r.why : `${r.endpoint.method} ${r.endpoint.path} [${r.id.join('/')}]`;
  };
  assert.equal(find('POST', '/containers/create'), 'POST /containers/create []');
  assert.equal(find('POST', '/CONTAINERS/Create'), 'POST /containers/create []');
  assert.equal(find('POST', '/containers/a/b/start'), 'POST /containers/{id}/start [a/b]');
  assert.equal(find('HEAD', '/containers/x/json'), 'GET /containers/{id}/json [x]');
  assert.equal(find('HEAD', '/containers/x/archive'), 'HEAD /containers/{id}/archive [x]');
  assert.equal(find('GET', '/images/json'), 'GET /images/json []');
  assert.equal(find('POST', '/containers/x/frobnicate'), 'POST /containers/x/frobnicate is not an endpoint the Docker profile models');
});

test('routing: refused endpoints name themselves, start and read requests take no body, version prefixes are read', () => {
  // No daemon is asked here: route() decides from the request alone.
  const profile = new DockerProfile(() => Promise.reject(new Error('not asked')));
  const why = (method: string, path: string, query = '', hasBody = false) => {
    const r = profile.route(method, path.slice(1).split('/'), query, hasBody);
    return r.refuse ? r.refuse.why : `${r.label} v=${r.version ?? '-'} body=${r.body}`;
  };
  assert.match(why('POST', '/v1.41/build'), /^POST \/build is refused .*image builds/);
  assert.match(why('POST', '/plugins/pull'), /^POST \/plugins\/pull is refused .*plugins/);
  assert.match(why('POST', '/services/create'), /swarm/);
  assert.match(why('POST', '/images/load'), /loads images/);
  assert.match(why('POST', '/commit'), /commits a container/);
  assert.match(why('POST', '/session'), /build session/);
  assert.match(why('POST', '/images/create', '?fromSrc=-'), /fromSrc= imports/);
  assert.equal(why('POST', '/images/create', '?fromImage=busybox'), 'POST /images/create v=- body=false');
  assert.match(why('POST', '/containers/x/start', '?checkpoint=c1'), /checkpoint/);
  assert.match(why('POST', '/v1.23/containers/x/start', '', true), /takes no body .*below API 1\.24/);
  assert.match(why('GET', '/containers/json', '', true), /takes no body/);
  assert.equal(why('POST', '/v1.41/containers/create'), 'POST /containers/create v=1.41 body=true');
  assert.equal(why('GET', '/v1.12/version'), 'GET /version v=1.12 body=false');
  assert.match(why('GET', '/v1.41/v1.41/version'), /more than one API version prefix/);
  assert.equal(pathVersion(['v1.41']), undefined, 'a lone segment is a path, not a prefix');
  assert.equal(compareVersions('1.9', '1.24'), -1);
  assert.equal(compareVersions('1.41.0', '1.41'), 0);
  assert.equal(compareVersions('1.x', '1.0'), 0);
});

test('check: the API version window, for the request and for the daemon (a stub stands in for the daemon`s /version)', async () => {
  let daemon = '1.41';
  let asked = 0;
  const profile = new DockerProfile(async (path) => {
    asked++;
    assert.equal(path, '/version');
    return { status: 200, json: { ApiVersion: daemon } };
  });
  const checker = new DockerChecker({ privileged: false, hostNamespaces: false, capAdd: [], devices: false, binds: [], securityOpt: [] });
  const check = async (path: string) => {
    const r = profile.route('GET', path.slice(1).split('/'), '', false);
    assert.ok(!r.refuse);
    return (await profile.check(r, checker, undefined)).refuse?.why;
  };
  assert.equal(await check('/v1.41/info'), undefined);
  assert.equal(await check('/v1.24/info'), undefined);
  assert.equal(await check('/info'), undefined);
  assert.match((await check('/v1.23/info'))!, /1\.23 is outside the API versions the Docker profile models \(1\.24 to 1\.41\)/);
  assert.match((await check('/v1.42/info'))!, /outside/);
  assert.equal(asked, 1, 'the daemon is asked once');
  const newer = new DockerProfile(async () => ({ status: 200, json: { ApiVersion: (daemon = '1.43') } }));
  const r = newer.route('GET', ['info'], '', false);
  assert.ok(!r.refuse);
  assert.match((await newer.check(r, checker, undefined)).refuse!.why, /the daemon's API version 1\.43 is outside/);
});

test('securityOpt: the rule lists exact options besides no-new-privileges; none that removes confinement loads', () => {
  const load = (opts: string) =>
    parseGatewayPolicy(`api: docker\nrules:\n  - who: {}\n    allow: ["POST /**"]\n    docker: { securityOpt: ${opts} }\n`, {
      source: 'g.yaml',
    });
  assert.deepEqual(load('["apparmor=ci-profile"]').rules[0]!.dockerLimits!.securityOpt, ['apparmor=ci-profile']);
  for (const bad of ['["seccomp=unconfined"]', '["disable"]', '["label=type:spc_t"]', '["seccomp={}"]', '"apparmor=x"', '[""]'])
    assert.throws(() => load(bad), /securityOpt/, bad);
  const checker = new DockerChecker({
    privileged: false,
    hostNamespaces: false,
    capAdd: [],
    devices: false,
    binds: [],
    securityOpt: ['apparmor=ci-profile'],
  });
  const body = (opts: string[]) =>
    checker.checkBody('create', Buffer.from(JSON.stringify({ Image: 'x', HostConfig: { SecurityOpt: opts } })));
  for (const ok of [['apparmor=ci-profile'], ['no-new-privileges'], ['no-new-privileges:true'], ['no-new-privileges=false']])
    assert.equal(body(ok), undefined, ok[0]);
  for (const bad of ['apparmor=other', 'APPARMOR=ci-profile', 'no-new-privileges=yes', 'disable', 'seccomp=unconfined'])
    assert.match(body([bad])!.why, /SecurityOpt .* is not allowed/, bad);
});

test('Tmpfs options that bind, move or remount are refused with a binds limit; size and mode pass', () => {
  const checker = new DockerChecker({
    privileged: false,
    hostNamespaces: false,
    capAdd: [],
    devices: false,
    binds: ['/srv/ci/**'],
    securityOpt: [],
  });
  const body = (tmpfs: Record<string, string>) =>
    checker.checkBody('create', Buffer.from(JSON.stringify({ Image: 'x', HostConfig: { Tmpfs: tmpfs } })));
  assert.equal(body({ '/t': 'size=1m,mode=1777,noexec' }), undefined);
  for (const bad of ['rbind', 'size=1m,BIND', 'remount,ro', 'rshared'])
    assert.match(body({ '/t': bad })!.why, /HostConfig\.Tmpfs "\/t": the options .* are not a tmpfs mount/, bad);
});

test('forwardSegments: the full Id the effective-state check found takes the place of the name the client used', () => {
  const profile = new DockerProfile(() => Promise.reject(new Error('not asked')));
  const id = 'f'.repeat(64);
  const forwarded = (method: string, path: string, inspected = true) => {
    const segments = path.slice(1).split('/');
    const r = profile.route(method, segments, '', false);
    assert.ok(!r.refuse, path);
    return '/' + forwardSegments(segments, r, inspected ? id : undefined).join('/');
  };
  assert.equal(forwarded('POST', '/v1.41/containers/app/start'), `/v1.41/containers/${id}/start`);
  assert.equal(forwarded('POST', '/containers/a1b2/restart'), `/containers/${id}/restart`);
  assert.equal(forwarded('POST', '/containers/a/b/attach'), `/containers/${id}/attach`, 'a placeholder of two segments');
  assert.equal(forwarded('POST', '/v1.24/exec/e1/start'), `/v1.24/exec/${id}/start`);
  assert.equal(forwarded('POST', '/containers/app/start', false), '/containers/app/start', 'nothing was inspected');
  assert.equal(forwarded('GET', '/v1.41/info'), '/v1.41/info', 'no object in the path');
});
