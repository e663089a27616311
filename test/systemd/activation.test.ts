/**
 * Socket activation under the real systemd-socket-activate: the activated process gets its
 * listening sockets as fds 3, 4, ... and verifies peers on them as on a socket from listen().
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chmodSync, linkSync, lstatSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { isRoot, needCommand, needNative, run, tempDir } from '../helpers/index.js';
import { watch, type Watched } from './watch.js';

const INDEX = fileURLToPath(new URL('../../src/index.js', import.meta.url));
const LISTENERS = fileURLToPath(new URL('../../src/systemd/listeners.js', import.meta.url));

/** systemd-socket-activate passes on only what -E names. */
const PASS_ENV = ['-E', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`];

/** Connects (which makes systemd-socket-activate start the service), sends, reads until the server ends. */
function exchange(path: string, send = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(path);
    let got = '';
    s.on('connect', () => s.end(send));
    s.on('data', (d) => (got += d));
    s.on('close', () => resolve(got));
    s.on('error', reject);
  });
}

/**
 * Runs `script` (an ES module with the package imported as `sp`) as a service under
 * systemd-socket-activate with `flags`; resolves once every socket is listening.
 */
async function activate(t: TestContext, script: string, flags: (dir: string) => string[]): Promise<{ dir: string; service: Watched }> {
  const tmp = tempDir('secpolicy-activation-');
  t.after(() => tmp.cleanup());
  const file = tmp.path('service.mjs');
  writeFileSync(file, `import * as sp from ${JSON.stringify(INDEX)};\n${script}`);
  chmodSync(file, 0o644);
  const argv = flags(tmp.dir);
  const service = watch(run('systemd-socket-activate', [...argv, ...PASS_ENV, process.execPath, file]));
  t.after(() => service.child.kill('SIGKILL'));
  const sockets = argv.filter((a, i) => argv[i - 1] === '-l').length;
  await service.stderr(new RegExp(`(Listening on .* as \\d+\\.[\\s\\S]*){${sockets}}`));
  return { dir: tmp.dir, service };
}

test(
  'an activated verified server: variables removed, fd close-on-exec and not inherited by a child, perms reads the activated file',
  { skip: needCommand('systemd-socket-activate') },
  async (t) => {
    const { dir } = await activate(
      t,
      `
      import { spawnSync } from 'node:child_process';
      import { readFileSync } from 'node:fs';
      const env = ['LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES'];
      const servers = sp.systemdListeners({
        server: () => sp.createServer({ policy: new sp.Policy().uid(process.getuid()).perms(0o666) }, (socket, peer) => {
          const child = spawnSync('sh', ['-c', 'ls /proc/$$/fd']).stdout.toString().split('\\n').filter(Boolean);
          socket.end(JSON.stringify({
            names: [...servers.keys()],
            env: env.filter((k) => k in process.env),
            fdinfo: readFileSync('/proc/self/fdinfo/3', 'utf8'),
            child,
            perms: peer.perms,
          }));
        }),
      });
      `,
      (d) => ['-l', `${d}/api.sock`, '--fdname=api'],
    );
    chmodSync(`${dir}/api.sock`, 0o666);
    const reply = JSON.parse(await exchange(`${dir}/api.sock`));
    assert.deepEqual(reply.names, ['api']);
    assert.deepEqual(reply.env, [], 'LISTEN_* are removed from the environment');
    const flags = Number.parseInt(/flags:\s+([0-7]+)/.exec(reply.fdinfo)![1]!, 8);
    assert.ok(flags & 0o2000000, `fd 3 is close-on-exec (flags ${flags.toString(8)})`);
    assert.ok(!reply.child.includes('3'), `a child started by the service does not hold fd 3: ${reply.child}`);
    assert.equal(reply.perms, 0o666, "the perms rule read the activated socket file's mode");
  },
);

test(
  'the perms rule on an activated socket follows its file: a mode the policy does not allow is denied',
  { skip: needCommand('systemd-socket-activate') },
  async (t) => {
    const { dir, service } = await activate(
      t,
      `
      const [server] = sp.systemdListeners({
        server: () => sp.createServer({ policy: new sp.Policy().perms(0o600) }, (socket) => socket.end('allowed')),
      }).values();
      server.on('denied', (d) => process.stderr.write('denied: ' + d.failures.map((f) => f.rule + ': ' + f.message).join('; ') + '\\n'));
      `,
      (d) => ['-l', `${d}/perm.sock`],
    );
    chmodSync(`${dir}/perm.sock`, 0o666);
    assert.equal(await exchange(`${dir}/perm.sock`), '', 'a 0666 socket file fails perms(0o600): no bytes');
    await service.stderr(/denied: perms: /);
  },
);

test(
  'perms on an activated socket reads the file systemd bound, held from activation: a socket renamed over its path changes nothing',
  { skip: needCommand('systemd-socket-activate') || needNative('netlink') },
  async (t) => {
    const { dir } = await activate(
      t,
      `
      import { readdirSync, readlinkSync } from 'node:fs';
      const [server] = sp.systemdListeners({
        server: () => sp.createServer({ policy: new sp.Policy().perms(0o600) }, (socket, peer) => socket.end(JSON.stringify({ perms: peer.perms, held }))),
      }).values();
      // Our fds on the socket file right after activation, before any connection was verified.
      const held = readdirSync('/proc/self/fd').filter((fd) => {
        try { return readlinkSync('/proc/self/fd/' + fd).endsWith('/api.sock'); } catch { return false; }
      }).length;
      `,
      (d) => ['-l', `${d}/api.sock`],
    );
    const path = `${dir}/api.sock`;
    chmodSync(path, 0o600);
    // A second name for our socket file: connections through it still reach our listener after the swap.
    linkSync(path, `${dir}/ours.sock`);
    assert.deepEqual(JSON.parse(await exchange(path)), { perms: 0o600, held: 1 });

    // The attacker (another user when we are root) renames a 0666 socket of its own over the path.
    chmodSync(dir, 0o777);
    const impostor = `${dir}/impostor.sock`;
    const script = `import os,socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.bind(${JSON.stringify(impostor)})\nos.chmod(${JSON.stringify(impostor)},0o666)\ns.listen(1)\nos.rename(${JSON.stringify(impostor)},${JSON.stringify(path)})\nprint('swapped',flush=True)\nsys.stdin.read()`;
    const attacker = watch(run('/usr/bin/python3', ['-c', script], isRoot ? { as: { uid: 1, gid: 1 } } : {}));
    t.after(() => attacker.child.kill('SIGKILL'));
    await attacker.stdout(/swapped/);
    assert.equal(lstatSync(path).mode & 0o777, 0o666, 'the path now names the impostor');

    const reply = await exchange(`${dir}/ours.sock`);
    assert.notEqual(reply, '', 'a connection to the activated listener is not judged by the impostor file');
    assert.deepEqual(JSON.parse(reply), { perms: 0o600, held: 1 });
  },
);

test(
  'named sockets: systemd:NAME picks one, a bare systemd with two is ambiguous, an unknown name is refused',
  { skip: needCommand('systemd-socket-activate') },
  async (t) => {
    const { dir } = await activate(
      t,
      `
      import { systemdSocket } from ${JSON.stringify(LISTENERS)};
      const picks = {};
      for (const spec of ['systemd', 'systemd:b', 'systemd:none']) {
        try { picks[spec] = systemdSocket(spec).name; } catch (e) { picks[spec] = e.code + ': ' + e.message; }
      }
      const servers = sp.systemdListeners();
      for (const s of servers.values()) s.on('connection', (c) => c.end(JSON.stringify({ names: [...servers.keys()], picks })));
      `,
      (d) => ['-l', `${d}/a.sock`, '-l', `${d}/b.sock`, '--fdname=a:b'],
    );
    const reply = JSON.parse(await exchange(`${dir}/b.sock`));
    assert.deepEqual(reply.names, ['a', 'b']);
    assert.equal(reply.picks['systemd:b'], 'b');
    assert.match(reply.picks.systemd, /^ERR_SECPOLICY_SOCKET_ACTIVATION: systemd passed 2 sockets; choose one/);
    assert.match(reply.picks['systemd:none'], /^ERR_SECPOLICY_SOCKET_ACTIVATION: systemd passed no socket named "none"/);
  },
);

test(
  'a datagram socket and a TCP listener are refused with ERR_SECPOLICY_SOCKET_ACTIVATION',
  { skip: needCommand('systemd-socket-activate', 'socat') },
  async (t) => {
    const script = `try { sp.systemdListeners(); console.log('accepted'); } catch (e) { console.log(e.code, e.message); }`;
    const datagram = await activate(t, script, (d) => ['--datagram', '-l', `${d}/d.sock`]);
    // A datagram service starts on the first datagram.
    run('socat', ['-u', 'STDIN', `UNIX-SENDTO:${datagram.dir}/d.sock`]).stdin!.end('x');
    assert.match(await datagram.service.stdout(/.+\n/), /^ERR_SECPOLICY_SOCKET_ACTIVATION .*not a stream socket/);

    // A free loopback port (systemd-socket-activate takes no port 0).
    const probe = net.createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const tcp = await activate(t, script, () => ['-l', `127.0.0.1:${port}`]);
    net
      .connect(Number(port), '127.0.0.1')
      .on('error', () => {})
      .end();
    assert.match(await tcp.service.stdout(/.+\n/), /^ERR_SECPOLICY_SOCKET_ACTIVATION .*not a UNIX domain socket/);
  },
);

test(
  'LISTEN_PID or LISTEN_PIDFDID of another process: the sockets are not ours and nothing is taken',
  { skip: needCommand('python3') },
  async () => {
    // python3 sets the variables and then execs node, so that LISTEN_PID can be node's own pid.
    const py = `
import os, sys
os.dup2(os.open("/dev/null", os.O_RDONLY), 3)
env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid() + int(sys.argv[1])))
if sys.argv[2] == "pidfd":
    env["LISTEN_PIDFDID"] = str(os.fstat(os.pidfd_open(os.getpid())).st_ino + int(sys.argv[3]))
os.execve(sys.argv[4], [sys.argv[4], "--input-type=module", "-e", sys.argv[5]], env)
`;
    const probe = `import * as sp from ${JSON.stringify(INDEX)};
    let r; try { r = sp.systemdSockets().map((s) => s.fd); } catch (e) { r = e.code + ': ' + e.message; }
    console.log(JSON.stringify({ r, left: Object.keys(process.env).filter((k) => k.startsWith('LISTEN_')) }));`;
    const cases: Array<[string, string, string, unknown, string]> = [
      ['1', 'none', '0', [], 'another pid: not ours'],
      ['0', 'pidfd', '1', [], 'another pidfd identity (a recycled pid): not ours'],
      ['0', 'none', '0', [3], 'our pid: fd 3'],
      ['0', 'pidfd', '0', [3], 'our pid and our pidfd identity: fd 3'],
    ];
    for (const [pidOffset, kind, idOffset, expected, why] of cases) {
      const { code, stdout, stderr } = await run('python3', ['-c', py, pidOffset, kind, idOffset, process.execPath, probe]).output();
      assert.equal(code, 0, stderr);
      const out = JSON.parse(stdout);
      assert.deepEqual(out.r, expected, why);
      assert.deepEqual(out.left, [], 'the variables are removed either way');
    }
    // fd 3 is /dev/null here: taking it as a listener is refused.
    const listeners = `import * as sp from ${JSON.stringify(INDEX)}; try { sp.systemdListeners(); } catch (e) { console.log(e.code, e.message); }`;
    const { stdout } = await run('python3', ['-c', py, '0', 'none', '0', process.execPath, listeners]).output();
    assert.match(stdout, /^ERR_SECPOLICY_SOCKET_ACTIVATION .*fd 3 is not a socket/);
  },
);
