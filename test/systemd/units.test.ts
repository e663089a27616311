/**
 * The example units in examples/systemd/ are run for real: the service's own ExecStart=
 * line, under systemd-socket-activate with the socket unit's ListenStream= and
 * FileDescriptorName=, NOTIFY_SOCKET and WATCHDOG_USEC as systemd would set them. Only
 * the host paths are moved into a temporary directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { hasCommand, needCommand, needRoot, run, tempDir } from '../helpers/index.js';
import { NOBODY } from '../helpers/connection.js';
import { watch } from './watch.js';

const EXAMPLES = fileURLToPath(new URL('../../../examples/systemd/', import.meta.url));
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** The `Key=value` lines of a unit file, by section (repeated keys keep every value). */
function unit(file: string): Record<string, Record<string, string[]>> {
  const sections: Record<string, Record<string, string[]>> = {};
  let current: Record<string, string[]> = {};
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section) sections[section[1]!] = current = {};
    else {
      const eq = line.indexOf('=');
      (current[line.slice(0, eq)] ??= []).push(line.slice(eq + 1));
    }
  }
  return sections;
}

/** systemd's time spans as WatchdogSec= takes them (here: plain seconds or `Ns`). */
function microseconds(span: string): number {
  const m = /^(\d+)(s|ms|min)?$/.exec(span);
  assert.ok(m, `a time span this test understands: ${span}`);
  return Number(m[1]) * { s: 1e6, ms: 1e3, min: 60e6 }[(m[2] ?? 's') as 's' | 'ms' | 'min'];
}

/** A pretend Docker API on a socket file: answers /_ping like dockerd does. */
async function fakeDocker(path: string): Promise<http.Server> {
  const server = http.createServer((req, res) => res.end(req.url === '/_ping' ? 'OK' : '{}'));
  server.listen(path);
  await once(server, 'listening');
  return server;
}

/** GET /_ping over a socket file with curl, run as `as`; the body, or curl's failure. */
async function ping(path: string, as?: { uid: number; gid: number }): Promise<string> {
  const { stdout, code } = await run('curl', ['-s', '--unix-socket', path, 'http://localhost/_ping'], as ? { as } : {}).output();
  return code === 0 ? stdout : `curl exit ${code}`;
}

test(
  'examples/systemd: the proxy pair is sandboxed, and its ExecStart runs socket-activated with readiness and the watchdog',
  { skip: needRoot() || needCommand('systemd-socket-activate', 'python3', 'curl', 'setpriv') },
  async (t) => {
    const socketUnit = unit(`${EXAMPLES}secpolicy-docker-proxy.socket`);
    const service = unit(`${EXAMPLES}secpolicy-docker-proxy.service`);
    const s = service.Service!;
    for (const [key, value] of [
      ['Type', 'notify'],
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
      ['RestrictSUIDSGID', 'yes'],
    ]) {
      assert.deepEqual(s[key!], [value], `${key}=${value}`);
    }
    assert.ok(s.WatchdogSec, 'WatchdogSec= is set');
    assert.deepEqual(s.CapabilityBoundingSet, ['CAP_SYS_PTRACE CAP_DAC_READ_SEARCH']);

    const tmp = tempDir('secpolicy-units-');
    t.after(() => tmp.cleanup());
    const [listenPath] = socketUnit.Socket!.ListenStream!;
    const [fdName] = socketUnit.Socket!.FileDescriptorName!;
    const [mode] = socketUnit.Socket!.SocketMode!;
    copyFileSync(`${EXAMPLES}docker-clients.yaml`, tmp.path('docker-clients.yaml'));
    chmodSync(tmp.path('docker-clients.yaml'), 0o644);
    const moved: Record<string, string> = {
      [listenPath!]: tmp.path('docker-proxy.sock'),
      '/var/run/docker.sock': tmp.path('docker.sock'),
      '/etc/secpolicy/docker-clients.yaml': tmp.path('docker-clients.yaml'),
    };
    const [exe, ...args] = s.ExecStart![0]!.split(/\s+/).map((a) => moved[a] ?? a);
    assert.equal(exe, '/usr/local/bin/secpolicy');

    if (hasCommand('systemd-analyze')) {
      // systemd itself reads the units (with ExecStart= pointing at a binary that exists here).
      writeFileSync(tmp.path('secpolicy-docker-proxy.socket'), readFileSync(`${EXAMPLES}secpolicy-docker-proxy.socket`));
      writeFileSync(
        tmp.path('secpolicy-docker-proxy.service'),
        readFileSync(`${EXAMPLES}secpolicy-docker-proxy.service`, 'utf8').replace('/usr/local/bin/secpolicy', process.execPath),
      );
      const verify = spawnSync('systemd-analyze', ['verify', tmp.path('secpolicy-docker-proxy.service')], { encoding: 'utf8' });
      assert.equal(
        verify.stderr
          .split('\n')
          .filter((l) => /secpolicy-docker-proxy/.test(l))
          .join('\n'),
        '',
        'systemd-analyze verify',
      );
    }

    const docker = await fakeDocker(tmp.path('docker.sock'));
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

    const daemon = watch(
      run('systemd-socket-activate', [
        '-l',
        moved[listenPath!]!,
        `--fdname=${fdName}`,
        '-E',
        `NOTIFY_SOCKET=${notifyAt}`,
        '-E',
        `WATCHDOG_USEC=${microseconds(s.WatchdogSec![0]!) / 100}`,
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

    assert.equal(await ping(moved[listenPath!]!), 'OK', 'root passes the example policy and reaches the API');
    await sup.stdout(/READY=1/);
    // curl reports the closed connection as it saw it (reset, empty reply, or a failed
    // connect when the reset beats its first write); the proxy's log proves the denial.
    assert.match(await ping(moved[listenPath!]!, NOBODY), /^curl exit (7|52|56)$/, 'nobody gets no answer from the API');
    await daemon.stderr(/denied pid=\d+ uid=65534/);
    await sup.stdout(/("WATCHDOG=1"[\s\S]*){2}/);
    daemon.child.kill('SIGTERM');
    await sup.stdout(/"STOPPING=1"/);
    const [code] = await once(daemon.child, 'close');
    assert.equal(code, 0);
  },
);
