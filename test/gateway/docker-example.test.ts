/**
 * examples/docker-gateway/policy.yaml, exactly as shipped, enforced by the `secpolicy
 * gateway` CLI in front of a real dockerd, with the real docker CLI run as other users:
 * a member of docker-ro may look but not touch, user ci may run unprivileged containers
 * with binds under /srv/ci, root may do everything, streams included (run -i, attach,
 * exec -it, logs -f, cp both ways). The daemon itself is asked what exists.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IMAGE, atTeardown, startDockerd, startGateway, type GatewayProcess } from '../helpers/dockerd.js';
import { needCommand, run, type RunAs } from '../helpers/index.js';

const POLICY = fileURLToPath(new URL('../../../examples/docker-gateway/policy.yaml', import.meta.url));
const daemon = await startDockerd();
const skip = daemon.skip || needCommand('setpriv', 'script', 'useradd', 'groupadd', 'userdel', 'groupdel');

let gateway: GatewayProcess;
let ci: RunAs;
let reader: RunAs;
let ciDir: string;
const cleanups: Array<() => void | Promise<unknown>> = [];

function idOf(db: 'passwd' | 'group', name: string): number | undefined {
  const r = spawnSync('getent', [db, name], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.split(':')[2]) : undefined;
}

/** The names the example policy uses, created for the test when the host has none (and removed after). */
function ensureAccounts(): void {
  if (idOf('group', 'docker-ro') === undefined) {
    const r = spawnSync('groupadd', ['-r', 'docker-ro'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`groupadd docker-ro: ${r.stderr}`);
    cleanups.push(() => void spawnSync('groupdel', ['docker-ro']));
    atTeardown(() => void (idOf('group', 'docker-ro') !== undefined && spawnSync('groupdel', ['docker-ro'])));
  }
  if (idOf('passwd', 'ci') === undefined) {
    const r = spawnSync('useradd', ['-r', '-M', '-N', '-g', 'nogroup', '-d', '/nonexistent', '-s', '/usr/sbin/nologin', 'ci'], {
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`useradd ci: ${r.stderr}`);
    cleanups.push(() => void spawnSync('userdel', ['ci']));
    atTeardown(() => void (idOf('passwd', 'ci') !== undefined && spawnSync('userdel', ['ci'])));
  }
  ci = { uid: idOf('passwd', 'ci')!, gid: 65534 };
  // nobody, with docker-ro as a supplementary group only: memberOf sees SO_PEERGROUPS.
  reader = { uid: 65534, gid: 65534, groups: [idOf('group', 'docker-ro')!] };
}

before(async () => {
  if (skip) return;
  ensureAccounts();
  if (!existsSync('/srv/ci')) {
    mkdirSync('/srv/ci', { recursive: true });
    cleanups.push(() => rmdirSync('/srv/ci'));
    atTeardown(() => existsSync('/srv/ci') && rmdirSync('/srv/ci'));
  }
  ciDir = mkdtempSync('/srv/ci/secpolicy-test-');
  chmodSync(ciDir, 0o755);
  writeFileSync(join(ciDir, 'payload'), 'from ci\n', { mode: 0o644 });
  cleanups.push(() => rmSync(ciDir, { recursive: true, force: true }));
  atTeardown(() => rmSync(ciDir, { recursive: true, force: true }));
  gateway = await startGateway({
    socket: join(daemon.dir, 'gw.sock'),
    target: daemon.socket,
    policy: POLICY,
    extra: ['--mode', '0666', '--log', join(daemon.dir, 'decisions.log')],
  });
  cleanups.push(() => gateway.stop());
  // A container of root's for the readers to look at and the others to try to touch.
  const r = await daemon.docker(['create', '--name', 'existing', '--network', 'none', IMAGE, 'true']);
  assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
  await daemon.stop();
});

/** The docker CLI through the gateway. */
const viaGateway = (as: RunAs | undefined, args: string[], input?: string) =>
  daemon.docker(args, { host: gateway.socket, ...(as ? { as } : {}), ...(input !== undefined ? { input } : {}) });

/** Asserts the CLI was refused by the gateway (its 403 message printed) and that the daemon has no container `name`. */
async function assertRefused(r: { code: number | null; stderr: string }, name?: string): Promise<void> {
  assert.notEqual(r.code, 0, 'the command succeeded');
  assert.match(r.stderr, /secpolicy:/, r.stderr);
  if (name) assert.ok(!(await daemon.containerNames()).includes(name), `the daemon created ${name}`);
}

test(
  'docker-ro: docker ps, images and inspect work; run, create, rm, cp out and exec are refused with the gateway message',
  { skip },
  async (t) => {
    await Promise.all([
      t.test('look', async () => {
        const ps = await viaGateway(reader, ['ps', '-a', '--format', '{{.Names}}']);
        assert.equal(ps.code, 0, ps.stderr);
        assert.match(ps.stdout, /^existing$/m);
        const images = await viaGateway(reader, ['images', '--format', '{{.Repository}}:{{.Tag}}']);
        assert.equal(images.code, 0, images.stderr);
        assert.match(images.stdout, /^bb:latest$/m);
        const inspect = await viaGateway(reader, ['inspect', 'existing']);
        assert.equal(inspect.code, 0, inspect.stderr);
        assert.equal(JSON.parse(inspect.stdout)[0].Name, '/existing');
      }),
      t.test('touch', async () => {
        await assertRefused(await viaGateway(reader, ['run', '--rm', '--name', 'ro-run', '--network', 'none', IMAGE, 'true']), 'ro-run');
        await assertRefused(await viaGateway(reader, ['create', '--name', 'ro-create', '--network', 'none', IMAGE, 'true']), 'ro-create');
        await assertRefused(await viaGateway(reader, ['rm', 'existing']));
        assert.ok((await daemon.containerNames()).includes('existing'), 'docker rm went through');
        await assertRefused(await viaGateway(reader, ['cp', 'existing:/bin/busybox', '-']));
      }),
    ]);
    const log = readFileSync(join(daemon.dir, 'decisions.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { peer: { uid: number }; method: string; path: string; rule: string | null; allowed: boolean });
    const denied = log.find((e) => e.peer.uid === 65534 && e.method === 'POST' && /\/containers\/create$/.test(e.path));
    assert.ok(denied, 'the decision log has the refused create');
    assert.equal(denied.allowed, false);
    assert.equal(denied.rule, 'readers');
  },
);

test(
  'ci: runs unprivileged containers with binds under /srv/ci; every way out of that is refused',
  { skip, concurrency: true },
  async (t) => {
    await t.test('docker run -v /srv/ci/...:/x:ro reads the tree; docker run -i passes stdin and output', async () => {
      const r = await viaGateway(ci, ['run', '--rm', '--network', 'none', '-v', `${ciDir}:/x:ro`, IMAGE, 'cat', '/x/payload']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'from ci\n');
      const i = await viaGateway(ci, ['run', '--rm', '-i', '--network', 'none', IMAGE, 'sh', '-c', 'read l; echo "got:$l"'], 'hello\n');
      assert.equal(i.code, 0, i.stderr);
      assert.equal(i.stdout, 'got:hello\n');
    });
    // Root's container that binds the host's /: --volumes-from would hand its mounts over.
    const host = await daemon.docker(['create', '--name', 'root-hostfs', '--network', 'none', '-v', '/:/host', IMAGE, 'true']);
    assert.equal(host.code, 0, host.stderr);
    const refused: Array<[string, string[]]> = [
      ['bind of /', ['-v', '/:/host']],
      ['bind of /etc with --mount', ['--mount', 'type=bind,src=/etc,dst=/x']],
      ['bind escaping the tree with ..', ['-v', '/srv/ci/../../etc:/x']],
      ['bind of a sibling that only shares the prefix', ['-v', '/srv/cix:/x']],
      // Read-write, a container (root inside) could plant a symlink that a later bind follows.
      ['read-write bind of the allowed tree', ['-v', '/srv/ci:/x']],
      ['read-write --mount of the allowed tree', ['--mount', 'type=bind,src=/srv/ci,dst=/x']],
      ['host-path bind with z relabelling', ['-v', '/srv/ci:/x:ro,z']],
      ['SELinux labels disabled', ['--security-opt', 'label=disable']],
      ['a syslog log driver run by the daemon', ['--log-driver', 'syslog']],
      ['privileged', ['--privileged']],
      ['host pid namespace', ['--pid', 'host']],
      ['host network', ['--network', 'host']],
      ['host ipc namespace', ['--ipc', 'host']],
      ['host uts namespace', ['--uts', 'host']],
      ['cap-add SYS_ADMIN', ['--cap-add', 'SYS_ADMIN']],
      ['cap-add ALL', ['--cap-add', 'ALL']],
      ['device', ['--device', '/dev/null']],
      ['seccomp unconfined', ['--security-opt', 'seccomp=unconfined']],
      ["another container's pid namespace", ['--pid', 'container:root-hostfs']],
      ["another container's network namespace", ['--network', 'container:root-hostfs']],
      ['volumes-from a container that binds /', ['--volumes-from', 'root-hostfs']],
      [
        'local volume whose options bind /etc',
        ['--mount', 'type=volume,dst=/x,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/etc'],
      ],
    ];
    await Promise.all(
      refused.map(([what, flags], i) =>
        t.test(`refused: ${what}`, async () => {
          const name = `ci-refused-${i}`;
          const network = flags.includes('--network') ? [] : ['--network', 'none'];
          await assertRefused(await viaGateway(ci, ['run', '--rm', '--name', name, ...network, ...flags, IMAGE, 'true']), name);
        }),
      ),
    );
    await t.test('refused: exec into a container, and touching root-hostfs beyond what the rule lists', async () => {
      await assertRefused(await viaGateway(ci, ['exec', 'root-hostfs', 'true']));
      // docker cp first asks HEAD .../archive; the refused HEAD has no body to print, so ask the host instead.
      const planted = `/tmp/secpolicy-cp-${process.pid}`;
      const cp = await viaGateway(ci, ['cp', `${ciDir}/payload`, `root-hostfs:/host${planted}`]);
      assert.notEqual(cp.code, 0, 'docker cp into root-hostfs succeeded');
      assert.ok(!existsSync(planted), 'docker cp wrote into the host through root-hostfs');
    });
  },
);

test('root: everything, streams included (attach, exec -it, logs -f, cp both ways)', { skip, concurrency: true }, async (t) => {
  await Promise.all([
    // Not --privileged: this sandbox's runc cannot grant every capability, even directly.
    t.test('a container with a bind of /', async () => {
      const r = await viaGateway(undefined, [
        'run',
        '--rm',
        '--network',
        'none',
        '-v',
        '/:/host',
        IMAGE,
        'sh',
        '-c',
        'test -d /host/proc && echo ok',
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'ok\n');
    }),
    t.test('the head of a streamed response is forwarded before its body (docker run awaits the head of POST /wait)', async () => {
      const c = await daemon.docker([
        'run',
        '-d',
        '--name',
        'waiter',
        '--network',
        'none',
        IMAGE,
        'sh',
        '-c',
        'until [ -e /tmp/go ]; do sleep 0.05; done',
      ]);
      assert.equal(c.code, 0, c.stderr);
      const s = net.connect(gateway.socket);
      s.write('POST /v1.41/containers/waiter/wait?condition=not-running HTTP/1.1\r\nHost: docker\r\n\r\n');
      let released = false;
      // The container exits only once released; the head must come before that.
      const release = (): void => {
        if (released) return;
        released = true;
        void daemon.docker(['exec', 'waiter', 'touch', '/tmp/go']);
      };
      const liveness = setTimeout(release, 10_000); // only so a broken gateway cannot hang the test
      let seen = '';
      let headBeforeRelease: boolean | undefined;
      await new Promise<void>((resolve, reject) => {
        s.on('error', reject);
        s.on('data', (d: Buffer) => {
          seen += d;
          if (headBeforeRelease === undefined && seen.includes('\r\n\r\n')) {
            headBeforeRelease = !released;
            release();
          }
          if (seen.includes('"StatusCode"')) resolve();
        });
      });
      clearTimeout(liveness);
      s.destroy();
      assert.match(seen, /^HTTP\/1\.1 200/);
      assert.equal(headBeforeRelease, true, 'the response head arrived only with the body, after the container exited');
    }),
    t.test('docker attach: a line sent through the gateway reaches the container', async () => {
      const c = await daemon.docker([
        'run',
        '-d',
        '-i',
        '--name',
        'att',
        '--network',
        'none',
        IMAGE,
        'sh',
        '-c',
        'read l; echo "attached:$l"',
      ]);
      assert.equal(c.code, 0, c.stderr);
      const r = await viaGateway(undefined, ['attach', 'att'], 'hi\n');
      assert.equal(r.code, 0, r.stderr);
      // The CLI may leave as soon as its stdin ends; what the container read is in its log.
      const wait = await daemon.docker(['wait', 'att']);
      assert.equal(wait.stdout.trim(), '0', wait.stderr);
      const logs = await daemon.docker(['logs', 'att']);
      assert.equal(logs.stdout, 'attached:hi\n', 'the line sent through the gateway reached the container');
    }),
    t.test('docker exec -it under a pty', async () => {
      const c = await daemon.docker(['run', '-d', '--name', 'ex', '--network', 'none', IMAGE, 'sleep', '60']);
      assert.equal(c.code, 0, c.stderr);
      const cmd = `docker -H unix://${gateway.socket} exec -it ex sh -c 'echo "tty:$(tty)"'`;
      const r = await run('script', ['-qec', cmd, '/dev/null'], {
        env: { PATH: process.env.PATH, DOCKER_CONFIG: join(daemon.dir, 'home') },
        timeout: 20_000,
        killSignal: 'SIGKILL',
      }).output();
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /tty:\/dev\/pts\/\d+/);
    }),
    t.test('docker logs -f follows until the container exits', async () => {
      const c = await daemon.docker([
        'run',
        '-d',
        '--name',
        'lg',
        '--network',
        'none',
        IMAGE,
        'sh',
        '-c',
        // It outlives the exec that lets it go on by a second: an exec still running when the
        // container's init exits is killed with it (exit 137).
        'echo one; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo two; sleep 1',
      ]);
      assert.equal(c.code, 0, c.stderr);
      const logs = run('docker', ['-H', `unix://${gateway.socket}`, 'logs', '-f', 'lg'], {
        env: { PATH: process.env.PATH, DOCKER_CONFIG: join(daemon.dir, 'home') },
        timeout: 20_000,
        killSignal: 'SIGKILL',
      });
      logs.stdin!.end();
      await new Promise<void>((resolve, reject) => {
        logs.once('close', () => reject(new Error('docker logs -f ended before printing "one"')));
        let seen = '';
        logs.stdout!.on('data', function onData(d: Buffer) {
          seen += d;
          if (seen.includes('one\n')) {
            logs.stdout!.off('data', onData);
            resolve();
          }
        });
      });
      const go = await daemon.docker(['exec', 'lg', 'touch', '/tmp/go']);
      assert.equal(go.code, 0, go.stderr);
      const r = await logs.output();
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'one\ntwo\n');
    }),
    t.test('docker cp into a container and back out', async () => {
      const c = await daemon.docker(['run', '-d', '--name', 'cpc', '--network', 'none', IMAGE, 'sleep', '60']);
      assert.equal(c.code, 0, c.stderr);
      const src = join(daemon.dir, 'cp-in.txt');
      writeFileSync(src, 'copied through the gateway\n');
      const put = await viaGateway(undefined, ['cp', src, 'cpc:/tmp/in.txt']);
      assert.equal(put.code, 0, put.stderr);
      const inside = await daemon.docker(['exec', 'cpc', 'cat', '/tmp/in.txt']);
      assert.equal(inside.stdout, 'copied through the gateway\n');
      const dest = join(daemon.dir, 'cp-out.txt');
      const get = await viaGateway(undefined, ['cp', 'cpc:/tmp/in.txt', dest]);
      assert.equal(get.code, 0, get.stderr);
      assert.equal(readFileSync(dest, 'utf8'), 'copied through the gateway\n');
    }),
  ]);
});
