/**
 * Ways to host root through a Docker gateway that only checks the fields it knows to be
 * dangerous, each tried by a restricted user (setpriv, curl) through the `secpolicy
 * gateway` CLI against a real dockerd: host-config fields at the top level of a create
 * body, a start body under an old API version, local-volume options that bind the host's
 * `/` (in a create body, and through a volume created behind the gateway's back), a
 * symlink planted under an allowed bind after the create was checked, an inline seccomp
 * profile and `SecurityOpt: ["disable"]`. Each must be refused, and the daemon, asked
 * directly, must show that nothing ran with the forbidden setting.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { IMAGE, startDockerd, type GatewayProcess } from '../helpers/dockerd.js';
import { curlAs, json, startDockerGateway } from './docker-fixture.js';
import { logHas } from './operate-helpers.js';
import { needCommand, type RunAs } from '../helpers/index.js';

const daemon = await startDockerd();
const skip = daemon.skip || needCommand('setpriv', 'curl');

/** The restricted user: may create and run containers whose binds stay under `ok/`. */
const USER: RunAs = { uid: 1, gid: 1 };

let gateway: GatewayProcess;
let ok: string;

before(async () => {
  if (skip) return;
  ok = join(daemon.dir, 'ok');
  mkdirSync(join(ok, 'work'), { recursive: true, mode: 0o755 });
  gateway = await startDockerGateway(
    daemon,
    `version: 1
api: docker
rules:
  - name: limited
    who: { uid: 1 }
    allow: ["GET /**", "HEAD /**", "POST /containers/create", "POST /containers/*/start", "POST /containers/*/exec",
            "POST /exec/*/start", "POST /volumes/create", "POST /containers/*/wait", "DELETE /containers/*"]
    docker: { privileged: false, hostNamespaces: false, capAdd: [], devices: false, binds: ["${ok}/**"] }
`,
    { extra: ['--log', join(daemon.dir, 'decisions.log')] },
  );
});

after(async () => {
  await gateway?.stop();
  await daemon.stop();
});

/** A request through the gateway as the restricted user. */
function asUser(method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
  return curlAs(gateway.socket, USER, method, path, body === undefined ? [] : json(body));
}

/** The daemon's own view of a container (direct socket). */
async function inspect(name: string): Promise<{
  State: { Running: boolean; StartedAt: string };
  HostConfig: Record<string, unknown>;
  Mounts: Array<{ Type: string; Source: string; Name?: string }>;
}> {
  const r = await daemon.api('GET', `/containers/${name}/json`);
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body);
}

const NEVER_STARTED = '0001-01-01T00:00:00Z';

function assertRefused(what: string, r: { status: number; body: string }, why: RegExp): void {
  assert.ok(r.status === 403 || r.status === 400, `${what}: status ${r.status} ${r.body}`);
  assert.match(r.body, /secpolicy: /, what);
  let message = r.body;
  try {
    message = (JSON.parse(r.body) as { message: string }).message;
  } catch {
    // not the gateway's JSON: matched as it is
  }
  assert.match(message, why, `${what}: refused for another reason`);
}

test('host-config fields at the top level of a create body are read as dockerd reads them, and refused', { skip }, async () => {
  const body = JSON.stringify({
    Image: IMAGE,
    Cmd: ['true'],
    Binds: ['/:/host'],
    CapAdd: ['SYS_ADMIN'],
    PidMode: 'host',
    Privileged: true,
  });
  assertRefused('top-level host config', await asUser('POST', '/v1.41/containers/create?name=toplevel', body), /Privileged is not allowed/);
  assert.ok(!(await daemon.containerNames()).includes('toplevel'), 'the daemon created the container');
  // Lower case and unversioned: the same fields, as Go's case folding finds them.
  const lower = `{"image":"${IMAGE}","binds":["/:/host"],"privileged":true}`;
  assertRefused(
    'top-level host config, lower case',
    await asUser('POST', '/containers/create?name=toplevel2', lower),
    /Privileged is not allowed/,
  );
  assert.ok(!(await daemon.containerNames()).includes('toplevel2'), 'the daemon created the container');
  // Each alone, in any case.
  const alone: Array<[string, unknown, RegExp]> = [
    ['Binds', ['/:/host'], /Binds "\/:\/host": \/ is outside/],
    ['capadd', ['SYS_ADMIN'], /CapAdd "SYS_ADMIN" is not an allowed capability/],
    ['PIDMODE', 'host', /PidMode "host" shares a namespace/],
    ['SecurityOpt', ['seccomp=unconfined'], /SecurityOpt "seccomp=unconfined" is not allowed/],
  ];
  for (const [i, [key, value, why]] of alone.entries()) {
    const one = JSON.stringify({ Image: IMAGE, Cmd: ['true'], [key]: value });
    assertRefused(`top-level ${key}`, await asUser('POST', `/v1.41/containers/create?name=alone${i}`, one), why);
    assert.ok(!(await daemon.containerNames()).includes(`alone${i}`), `the daemon created a container with a top-level ${key}`);
  }
});

test('a body on POST /v1.23/containers/{id}/start (a new host config to dockerd) is refused', { skip }, async () => {
  const created = await asUser('POST', '/v1.41/containers/create?name=clean', JSON.stringify({ Image: IMAGE, Cmd: ['sleep', '30'] }));
  assert.equal(created.status, 201, created.body);
  for (const prefix of ['/v1.23', '/v1.41', '']) {
    const r = await asUser('POST', `${prefix}/containers/clean/start`, JSON.stringify({ Binds: ['/:/host'], PidMode: 'host' }));
    assertRefused(`start body at ${prefix || 'no prefix'}`, r, /takes no body/);
  }
  const c = await inspect('clean');
  assert.equal(c.State.StartedAt, NEVER_STARTED, 'the container was started');
  assert.deepEqual(c.HostConfig.Binds ?? null, null, 'the start body replaced the host config');
  assert.equal(c.HostConfig.PidMode, '');
});

test('a tmpfs local volume with o=bind,device=/ is a bind of the host /: refused in Mounts and in volumes/create', { skip }, async () => {
  const mounts = {
    Image: IMAGE,
    Cmd: ['cat', '/x/etc/shadow'],
    HostConfig: {
      Mounts: [
        {
          Type: 'volume',
          Target: '/x',
          VolumeOptions: { DriverConfig: { Name: 'local', Options: { type: 'tmpfs', o: 'bind', device: '/' } } },
        },
      ],
    },
  };
  assertRefused(
    'Mounts with a binding volume',
    await asUser('POST', '/v1.41/containers/create?name=tmpfsbind', JSON.stringify(mounts)),
    /binds host path "\/"/,
  );
  assert.ok(!(await daemon.containerNames()).includes('tmpfsbind'), 'the daemon created the container');
  for (const o of ['bind', 'rw,BIND', 'rbind,ro']) {
    const vol = { Name: `hostroot-${o.replace(/\W/g, '')}`, Driver: 'local', DriverOpts: { type: 'tmpfs', o, device: '/' } };
    assertRefused(`volumes/create with o=${o}`, await asUser('POST', '/v1.41/volumes/create', JSON.stringify(vol)), /binds host path "\/"/);
    assert.equal((await daemon.api('GET', `/volumes/${vol.Name}`)).status, 404, `the daemon created ${vol.Name}`);
  }
});

test("a binding volume made behind the gateway and named in Binds: the start is refused from dockerd's own inspect", { skip }, async () => {
  // Made directly (as an administrator or an earlier policy might have): the body of the create names only "hostroot".
  const made = await daemon.api('POST', '/volumes/create', {
    Name: 'hostroot',
    Driver: 'local',
    DriverOpts: { type: 'tmpfs', o: 'bind', device: '/' },
  });
  assert.equal(made.status, 201, made.body);
  const created = await asUser(
    'POST',
    '/v1.41/containers/create?name=viavolume',
    JSON.stringify({ Image: IMAGE, Cmd: ['cat', '/x/etc/shadow'], HostConfig: { Binds: ['hostroot:/x:ro'] } }),
  );
  assert.equal(created.status, 201, created.body);
  assertRefused(
    'start of a container mounting a binding volume',
    await asUser('POST', '/v1.41/containers/viavolume/start'),
    /"hostroot".*binds host path "\/"/,
  );
  assert.equal((await inspect('viavolume')).State.StartedAt, NEVER_STARTED, 'the container was started');
});

test(
  'a symlink planted under an allowed bind after the create: no container may write the tree, and the start is refused',
  { skip },
  async () => {
    const link = join(ok, 'work', 'link');
    rmSync(link, { force: true, recursive: true });
    const x = await asUser(
      'POST',
      '/v1.41/containers/create?name=victim',
      JSON.stringify({ Image: IMAGE, Cmd: ['ls', '/x/etc'], HostConfig: { Binds: [`${link}:/x:ro`] } }),
    );
    assert.equal(x.status, 201, x.body);
    // A second allowed container, root inside, with the tree bound read-write, would plant the link.
    const planter = await asUser(
      'POST',
      '/v1.41/containers/create?name=planter',
      JSON.stringify({ Image: IMAGE, Cmd: ['ln', '-s', '/', '/w/link'], HostConfig: { Binds: [`${ok}/work:/w`] } }),
    );
    assertRefused('a read-write bind of the allowed tree', planter, /must be read-only/);
    assert.ok(!(await daemon.containerNames()).includes('planter'), 'the daemon created the planter');
    // Planted anyway (by whoever can write the tree on the host): the start is refused.
    symlinkSync('/', link);
    try {
      assertRefused(
        'start with a symlink below the allowed root',
        await asUser('POST', '/v1.41/containers/victim/start'),
        /link is a symbolic link/,
      );
      assert.equal((await inspect('victim')).State.StartedAt, NEVER_STARTED, 'the container was started with the host / mounted');
    } finally {
      rmSync(link, { force: true });
    }
  },
);

test(
  'SecurityOpt: an inline seccomp profile, "disable", unconfined and label changes are refused; no-new-privileges passes',
  { skip },
  async () => {
    const opts = [
      'seccomp={"defaultAction":"SCMP_ACT_ALLOW"}',
      'seccomp:{"defaultAction":"SCMP_ACT_ALLOW"}',
      'disable',
      'label=disable',
      'label:type:spc_t',
      'apparmor=unconfined',
      'seccomp=unconfined',
      'systempaths=unconfined',
    ];
    for (const [i, opt] of opts.entries()) {
      const body = JSON.stringify({ Image: IMAGE, Cmd: ['true'], HostConfig: { SecurityOpt: [opt] } });
      assertRefused(
        `SecurityOpt ${opt}`,
        await asUser('POST', `/v1.41/containers/create?name=secopt${i}`, body),
        /SecurityOpt .* is not allowed/,
      );
      assert.ok(!(await daemon.containerNames()).includes(`secopt${i}`), `the daemon created a container with ${opt}`);
    }
    for (const [i, opt] of ['no-new-privileges', 'no-new-privileges:true', 'no-new-privileges=true'].entries()) {
      const body = JSON.stringify({ Image: IMAGE, Cmd: ['true'], HostConfig: { SecurityOpt: [opt] } });
      const r = await asUser('POST', `/v1.41/containers/create?name=nnp${i}`, body);
      assert.equal(r.status, 201, `${opt}: ${r.body}`);
    }
  },
);

test('a container whose masked paths were emptied behind the gateway: its start as the restricted user is refused', { skip }, async () => {
  // Made directly: the daemon honours MaskedPaths: [] (no /proc masking) without privileges.
  const made = await daemon.api('POST', '/containers/create?name=unmasked', {
    Image: IMAGE,
    Cmd: ['cat', '/proc/kcore'],
    HostConfig: { MaskedPaths: [], NetworkMode: 'none' },
  });
  assert.equal(made.status, 201, made.body);
  assertRefused(
    'start of an unmasked container',
    await asUser('POST', '/v1.41/containers/unmasked/start'),
    /MaskedPaths leaves \/proc\/asound unmasked/,
  );
  assert.equal((await inspect('unmasked')).State.StartedAt, NEVER_STARTED, 'the container was started');
  // The control: a container the restricted user made within the limits starts.
  const fine = await asUser(
    'POST',
    '/v1.41/containers/create?name=fine',
    JSON.stringify({ Image: IMAGE, Cmd: ['true'], HostConfig: { NetworkMode: 'none' } }),
  );
  assert.equal(fine.status, 201, fine.body);
  const started = await asUser('POST', '/v1.41/containers/fine/start');
  assert.equal(started.status, 204, started.body);
});

test(
  'exec with the docker CLI: into a container within the limits it runs; into one outside them the exec start is refused',
  { skip },
  async () => {
    // Root's container binding the host's / (made directly), and the restricted user's own.
    const root = await daemon.docker(['run', '-d', '--name', 'roothost', '--network', 'none', '-v', '/:/host', IMAGE, 'sleep', '60']);
    assert.equal(root.code, 0, root.stderr);
    const own = await daemon.docker(['run', '-d', '--name', 'own', '--network', 'none', IMAGE, 'sleep', '60']);
    assert.equal(own.code, 0, own.stderr);
    const ok = await daemon.docker(['exec', 'own', 'echo', 'inside'], { host: gateway.socket, as: USER });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, 'inside\n');
    const refused = await daemon.docker(['exec', 'roothost', 'cat', '/host/etc/shadow'], { host: gateway.socket, as: USER });
    assert.notEqual(refused.code, 0, 'the exec ran');
    // The CLI prints only the status of a refused upgrade; the decision log has the reason.
    assert.match(refused.stderr, /403/, refused.stderr);
    // The gateway (another process) writes its lines once per turn: wait for the refusal's.
    const deniedStart = (e: { path: string | null; allowed: boolean }): boolean =>
      /\/exec\/[0-9a-f]+\/start$/.test(e.path ?? '') && !e.allowed;
    const log = await logHas(join(daemon.dir, 'decisions.log'), (entries) => entries.some(deniedStart), 'the refused exec start');
    const start = log.filter(deniedStart);
    assert.equal(start.length, 1, JSON.stringify(start));
    assert.match(start[0]!.reason, /\(bind "\/"\)|Binds "\/:\/host": \/ is outside the allowed host paths/);
  },
);
