import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import { Policy, Result, parsePolicy } from '../../src/index.js';
import { Cgroups, allHierarchies, needCgroups } from '../helpers/cgroups.js';
import { run } from '../helpers/index.js';
import { compileStatic, needRunc, runContainer } from '../helpers/runc.js';
import { PY, acceptFrom, connectScript, reap, socketServer } from './peers.js';
import { unixClientSource } from '../helpers/c-client.js';

/** A static client: connects to argv[1], says `up <pid>`, holds the connection until the server closes it. */
const CLIENT = unixClientSource(`
#ifdef SPOOF
  puts("a different program at the same path");
#endif
  printf("up %d\\n", getpid());
  fflush(stdout);
  char buf[256];
  while (read(s, buf, sizeof buf) > 0) {}
  return 0;
`);

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

async function setup(t: TestContext) {
  const server = await socketServer(t, 'secpolicy-runc-');
  const trusted = server.tmp.path('bin/client');
  const spoof = server.tmp.path('spoof/client');
  compileStatic(CLIENT, trusted);
  compileStatic(CLIENT, spoof, ['SPOOF']);
  mkdirSync(server.tmp.path('bundle-a'));
  mkdirSync(server.tmp.path('bundle-b'));
  return { ...server, trusted, spoof, sockDir: server.tmp.dir };
}

test(
  'runc container: detected as docker with its id; a different binary at the host path fails program and programDigest',
  { skip: needRunc() },
  async (t) => {
    const { server, tmp, trusted, spoof, sockDir } = await setup(t);
    // The container's rootfs holds the spoof at exactly the path the rule names on the host.
    const c = runContainer({
      bundle: tmp.path('bundle-a'),
      args: [trusted, '/sock/s.sock'],
      files: [[spoof, trusted]],
      mounts: [{ source: sockDir, destination: '/sock' }],
    });
    t.after(() => c.stop());
    const socket = await acceptFrom(server, c.child);

    const d = await new Policy().program(trusted).programDigest(sha256(trusted)).apply(socket);
    assert.equal(d.result, Result.PROGRAM | Result.PROGRAM_DIGEST);
    // Same path string, another file: the peer names its program exactly like the rule does.
    assert.equal(d.peer.program, trusted);
    assert.equal((await new Policy().programDigest(sha256(spoof)).apply(socket)).allowed, true);

    assert.deepEqual(d.peer.container, { runtime: 'docker', id: c.id });
    assert.equal(d.peer.cgroup, `/docker/${c.id}`);
    assert.equal(d.peer.pinning, 'pidfd');
    assert.equal((await new Policy().container().apply(socket)).allowed, true);
    assert.equal((await new Policy().container({ runtime: 'docker', idPrefix: c.id.slice(0, 12) }).apply(socket)).allowed, true);
    assert.equal((await new Policy().container({ id: c.id }).apply(socket)).allowed, true);
    assert.equal((await new Policy().container({ id: 'f'.repeat(64) }).apply(socket)).result, Result.CONTAINER);
    assert.equal((await new Policy().container({ runtime: ['podman', 'lxc'] }).apply(socket)).result, Result.CONTAINER);
    const host = await new Policy().host().apply(socket);
    assert.equal(host.result, Result.HOST);
    assert.match(host.failures[0]!.message, /pid, mnt namespaces/);
  },
);

test(
  'runc container running the host binary itself (bind mount): program, digest and strict mode pass; host() does not',
  { skip: needRunc() },
  async (t) => {
    const { server, tmp, trusted, sockDir } = await setup(t);
    const c = runContainer({
      bundle: tmp.path('bundle-b'),
      args: [trusted, '/sock/s.sock'],
      mounts: [
        { source: sockDir, destination: '/sock' },
        { source: tmp.path('bin'), destination: tmp.path('bin'), readonly: true },
      ],
    });
    t.after(() => c.stop());
    const socket = await acceptFrom(server, c.child);
    const d = await new Policy({ strict: true }).program(trusted).programDigest(sha256(trusted)).container({ id: c.id }).apply(socket);
    assert.equal(d.allowed, true, JSON.stringify(d.failures));
    assert.equal((await new Policy().host().apply(socket)).result, Result.HOST);
  },
);

test(
  'a host process in a recognised host cgroup is in no container: container() fails and says where it is',
  { skip: needCgroups() },
  async (t) => {
    const { server, path } = await socketServer(t, 'secpolicy-runc-');
    // Placed by root in a system unit in every hierarchy mounted here: a layout the host's own services have.
    const rel = `system.slice/secpolicy-host-${process.pid}.service`;
    const cgroups = new Cgroups(allHierarchies()).make(rel);
    const child = run('sh', ['-c', `${cgroups.enter(rel)} && exec "$@"`, 'sh', PY, '-c', connectScript(path)]);
    t.after(async () => {
      await reap(child);
      cgroups.remove();
    });
    const socket = await acceptFrom(server, child);
    const d = await new Policy().container().host().apply(socket);
    assert.equal(d.result, Result.CONTAINER);
    assert.equal(d.peer.container, null);
    assert.match(d.failures[0]!.message, /not in a container \(cgroup \//);
    assert.equal((await parsePolicy('not: { container: true }').apply(socket)).allowed, true);
  },
);

/** A runc container in a cgroup of the test's choosing; `parent` is removed after it in every hierarchy. */
async function containerAt(t: TestContext, cgroupsPath: (id: string) => string, parent: string) {
  const { server, tmp } = await setup(t);
  const c = runContainer({
    bundle: tmp.path('bundle-a'),
    args: ['/bin/client', '/sock/s.sock'],
    files: [[tmp.path('bin/client'), '/bin/client']],
    mounts: [{ source: tmp.dir, destination: '/sock' }],
    cgroupsPath: cgroupsPath('{id}'),
  });
  t.after(async () => {
    await c.stop();
    new Cgroups(allHierarchies()).remove([parent]);
  });
  return { c, socket: await acceptFrom(server, c.child) };
}

test(
  'docker\'s --cgroup-parent with the cgroupfs driver (/<parent>/<64 hex>): a docker container, never "not in a container"',
  { skip: needRunc() },
  async (t) => {
    const parent = `secpolicy-parent-${process.pid}`;
    const { c, socket } = await containerAt(t, (id) => `/${parent}/${id}`, parent);
    assert.equal((await parsePolicy('not: { container: true }').apply(socket)).allowed, false, 'not: { container: true }');
    const d = await new Policy().container({ runtime: 'docker', id: c.id }).apply(socket);
    assert.equal(d.allowed, true, JSON.stringify(d.failures));
    assert.equal(d.peer.cgroup, `/${parent}/${c.id}`);
  },
);

test(
  'a container in a cgroup layout nobody recognises: unknown, so neither container: true nor not: { container: true } admits it',
  { skip: needRunc() },
  async (t) => {
    const parent = `secpolicy-odd-${process.pid}`;
    const { socket } = await containerAt(t, () => `/${parent}/box`, parent);
    for (const rule of ['container: true', 'not: { container: true }', 'anyOf: [{ not: { container: true } }, { uid: 4242 }]']) {
      const d = await parsePolicy(rule).apply(socket);
      assert.equal(d.allowed, false, `${rule}: ${JSON.stringify(d.failures)}`);
      assert.ok(
        d.failures.some((f) => f.unknown === true),
        `${rule}: ${JSON.stringify(d.failures)}`,
      );
    }
    const peer = new Policy().applySync(socket).peer;
    assert.equal(peer.container, undefined);
    assert.match(peer.reason('container') ?? '', /not a layout/);
  },
);

test('container() validates its match up front', () => {
  const invalid = (field: string) => (e: unknown) =>
    (e as { code: string }).code === 'ERR_SECPOLICY_INVALID_ARG' && (e as Error).message.includes(`"${field}"`);
  assert.throws(() => new Policy().container({ idd: 'x' } as never), invalid('container.idd'));
  assert.throws(() => new Policy().container({ id: [] }), invalid('container.id'));
  assert.throws(() => new Policy().container({ idPrefix: '' }), invalid('container.idPrefix'));
  assert.throws(() => new Policy().container({ runtime: [1] } as never), invalid('container.runtime[0]'));
  assert.throws(() => new Policy().container('docker' as never), invalid('container'));
  assert.throws(() => new Policy().sameNamespace('time' as never), invalid('sameNamespace'));
  assert.throws(() => new Policy().sameNamespace(['net', 'bogus'] as never), invalid('sameNamespace[1]'));
});
