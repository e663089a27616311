/**
 * The gateway's units in examples/systemd/ for real: systemd-analyze verify reads them (with
 * ExecStart= naming an executable that exists here), and the service's own ExecStart= line runs
 * under systemd-socket-activate with the socket unit's ListenStream=, FileDescriptorName= and
 * SocketMode=, NOTIFY_SOCKET and WATCHDOG_USEC as systemd sets them. Only host paths are moved
 * into a temporary directory, and the policy is a small one of the test's (the example policy
 * names accounts this host does not have).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { hasCommand, needCommand, needRoot, repoRoot, run, tempDir } from '../helpers/index.js';
import { NOBODY } from '../helpers/connection.js';
import { CLI } from '../helpers/dockerd.js';
import { watch } from '../systemd/watch.js';

const EXAMPLES = join(repoRoot, 'examples', 'systemd');

/** The `Key=value` lines of a unit file, by section. */
function unit(file: string): Record<string, Record<string, string[]>> {
  const sections: Record<string, Record<string, string[]>> = {};
  let current: Record<string, string[]> = {};
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section) sections[section[1]!] = current = {};
    else (current[line.slice(0, line.indexOf('='))] ??= []).push(line.slice(line.indexOf('=') + 1));
  }
  return sections;
}

/** GET `path` over a socket file with curl as `as`: "status body". */
async function get(socket: string, path: string, as?: { uid: number; gid: number }): Promise<string> {
  const r = await run('curl', ['-s', '--unix-socket', socket, '-w', ' %{http_code}', `http://docker${path}`], as ? { as } : {}).output();
  return r.stdout;
}

test(
  'examples/systemd: the gateway pair passes systemd-analyze verify and runs socket-activated with readiness, the watchdog and its log',
  { skip: needRoot() || needCommand('systemd-socket-activate', 'python3', 'curl', 'setpriv') },
  async (t) => {
    const socketUnit = unit(join(EXAMPLES, 'secpolicy-gateway.socket'));
    const s = unit(join(EXAMPLES, 'secpolicy-gateway.service')).Service!;
    for (const [key, value] of [
      ['Type', 'notify'],
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['LogsDirectory', 'secpolicy'],
    ] as const) {
      assert.deepEqual(s[key], [value], `${key}=${value}`);
    }
    // Peers are read in /proc: nothing may hide it.
    assert.equal(s.ProtectProc, undefined);
    assert.equal(s.ProcSubset, undefined);
    assert.ok(s.WatchdogSec, 'WatchdogSec= is set');

    const tmp = tempDir('secpolicy-gateway-units-');
    t.after(() => tmp.cleanup());
    const [listenPath] = socketUnit.Socket!.ListenStream!;
    const [fdName] = socketUnit.Socket!.FileDescriptorName!;
    const [mode] = socketUnit.Socket!.SocketMode!;
    mkdirSync(tmp.path('log'));
    writeFileSync(tmp.path('gateway.yaml'), 'version: 1\nrules:\n  - { name: root, who: { uid: 0 }, allow: ["GET /**"] }\n');
    const moved: Record<string, string> = {
      [listenPath!]: tmp.path('gateway.sock'),
      '/var/run/docker.sock': tmp.path('docker.sock'),
      '/etc/secpolicy/gateway.yaml': tmp.path('gateway.yaml'),
      '/var/log/secpolicy/gateway.log': tmp.path('log/gateway.log'),
    };
    const [exe, ...args] = s.ExecStart![0]!.split(/\s+/).map((a) => moved[a] ?? a);
    assert.equal(exe, '/usr/local/bin/secpolicy', 'the path `npm install -g` gives it (README.md)');
    assert.deepEqual(args.slice(0, 3), ['gateway', '--listen', `systemd:${fdName}`]);

    if (hasCommand('systemd-analyze')) {
      // systemd itself reads the units, with ExecStart= naming an executable that exists here.
      writeFileSync(tmp.path('secpolicy-gateway.socket'), readFileSync(join(EXAMPLES, 'secpolicy-gateway.socket')));
      writeFileSync(
        tmp.path('secpolicy-gateway.service'),
        readFileSync(join(EXAMPLES, 'secpolicy-gateway.service'), 'utf8').replaceAll('/usr/local/bin/secpolicy', process.execPath),
      );
      const verify = spawnSync('systemd-analyze', ['verify', tmp.path('secpolicy-gateway.socket'), tmp.path('secpolicy-gateway.service')], {
        encoding: 'utf8',
      });
      const about = verify.stderr.split('\n').filter((l) => /secpolicy-gateway/.test(l));
      assert.deepEqual(about, [], 'systemd-analyze verify has nothing to say about the units');
    }

    const docker = http.createServer((req, res) => res.end(req.url === '/_ping' ? 'OK' : '{}'));
    docker.listen(tmp.path('docker.sock'));
    await once(docker, 'listening');
    t.after(() => docker.close());
    const notifyAt = tmp.path('notify.sock');
    const sup = watch(
      run('python3', [
        '-c',
        'import socket,sys,json\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nprint("bound",flush=True)\nwhile True: print(json.dumps(s.recv(4096).decode()),flush=True)',
        notifyAt,
      ]),
    );
    t.after(() => sup.child.kill('SIGKILL'));
    await sup.stdout(/bound/);

    const watchdogUsec = 300_000; // a short watchdog, so the keep-alives are seen at once
    const daemon = watch(
      run('systemd-socket-activate', [
        '-l',
        moved[listenPath!]!,
        `--fdname=${fdName}`,
        '-E',
        `NOTIFY_SOCKET=${notifyAt}`,
        '-E',
        `WATCHDOG_USEC=${watchdogUsec}`,
        '-E',
        `PATH=${process.env.PATH}`,
        process.execPath,
        CLI,
        ...args,
      ]),
    );
    t.after(() => daemon.child.kill('SIGKILL'));
    await daemon.stderr(/Listening on .* as 3\./);
    // systemd applies SocketMode= to the file it creates; systemd-socket-activate does not.
    chmodSync(moved[listenPath!]!, Number.parseInt(mode!, 8));

    assert.equal(await get(moved[listenPath!]!, '/_ping'), 'OK 200', 'root is allowed');
    await sup.stdout(/READY=1/);
    assert.match(await get(moved[listenPath!]!, '/_ping', NOBODY), / 403$/, 'nobody is refused');
    await sup.stdout(/("WATCHDOG=1"[\s\S]*){2}/);
    daemon.child.kill('SIGTERM');
    await sup.stdout(/"STOPPING=1"/);
    const [code] = await once(daemon.child, 'close');
    assert.equal(code, 0);
    const log = readFileSync(tmp.path('log/gateway.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { allowed: boolean; peer: { uid: number } });
    assert.deepEqual(
      log.map((e) => [e.peer.uid, e.allowed]),
      [
        [0, true],
        [65534, false],
      ],
      'the decision log is written where LogsDirectory= makes it writable',
    );
  },
);

test('examples/systemd/README.md: its install lines work on a host without /etc/secpolicy, from the examples the package ships', async (t) => {
  const readme = readFileSync(join(EXAMPLES, 'README.md'), 'utf8');
  const installs = readme.split('\n').filter((l) => /^install /.test(l));
  assert.equal(installs.length, 6, readme);
  assert.match(readme, /^cd "\$\(npm root -g\)\/secpolicy\/examples"$/m);
  // The same lines, run in this checkout's examples/ (what `npm root -g`/secpolicy/examples holds), into an empty root.
  const tmp = tempDir('secpolicy-install-');
  t.after(() => tmp.cleanup());
  for (const line of installs) {
    const r = await run('bash', ['-c', line.replace(/ \/etc\//g, ` ${tmp.dir}/etc/`)], { cwd: join(repoRoot, 'examples') }).output();
    assert.equal(r.code, 0, `${line}: ${r.stderr}`);
  }
  for (const file of [
    'secpolicy/gateway.yaml',
    'secpolicy/docker-clients.yaml',
    'systemd/system/secpolicy-gateway.service',
    'systemd/system/secpolicy-docker-proxy.socket',
  ]) {
    assert.equal(statSync(join(tmp.dir, 'etc', file)).mode & 0o777, 0o644, file);
  }
});
