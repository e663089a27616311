/**
 * `secpolicy audit` and the sockets this package serves: a real `secpolicy gateway` and
 * `secpolicy proxy` on 0666 sockets are recognised (they authenticate every peer), while a
 * root process that only looks like them, or another socket, keeps its high finding;
 * `--ignore` leaves sockets out by path or glob; and a long socket name is never cut.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import type { SocketReport } from '../../src/index.js';
import { needCommand, needRoot, tempDir } from '../helpers/index.js';
import { startGateway, waitForPath } from '../helpers/dockerd.js';
import { holdSockets } from './holder.js';
import { secpolicyService } from '../../src/audit/holders.js';
import { CLI, secpolicy } from '../cli/cli.js';

/** Starts `node <script> ...args` and waits for `socket` to appear; returns a stop function. */
async function daemon(
  script: string,
  args: string[],
  socket: string,
): Promise<{ pid: number; output: () => string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await once(child, 'exit');
  };
  try {
    await waitForPath(socket, child, () => out);
  } catch (e) {
    await stop();
    throw e;
  }
  return { pid: child.pid!, output: () => out, stop };
}

const codes = (r: SocketReport | undefined): string[] => (r?.findings ?? []).map((f) => `${f.code}:${f.severity}`).sort();

test(
  'secpolicy audit recognises a secpolicy gateway and proxy by what runs, not by what a command line says',
  { skip: needRoot() },
  async (t) => {
    const tmp = tempDir('secpolicy-audit-served-');
    t.after(() => tmp.cleanup());
    writeFileSync(tmp.path('gateway.yaml'), 'rules:\n  - { name: root, who: { uid: 0 }, allow: ["GET /**"] }\n');
    writeFileSync(tmp.path('proxy.yaml'), 'uid: 0\n');

    // The real gateway and proxy, both on sockets every user may connect to.
    const gateway = await startGateway({
      socket: tmp.path('gw.sock'),
      target: tmp.path('missing.sock'),
      policy: tmp.path('gateway.yaml'),
      extra: ['--mode', '0666'],
    });
    t.after(() => gateway.stop());
    const proxy = await daemon(
      CLI,
      ['proxy', '--listen', 'px.sock', '--to', tmp.path('missing.sock'), '--policy', tmp.path('proxy.yaml'), '--mode', '0666'].map((a) =>
        a === 'px.sock' ? tmp.path(a) : a,
      ),
      tmp.path('px.sock'),
    );
    t.after(proxy.stop);

    // An impostor: a root process whose command line has the same shape (node .../dist/src/cli/main.js
    // gateway --listen ...) from a package that is not this one; it authenticates nobody.
    mkdirSync(tmp.path('fake/dist/src/cli'), { recursive: true });
    writeFileSync(tmp.path('fake/package.json'), '{ "name": "not-secpolicy", "type": "module" }\n');
    writeFileSync(
      tmp.path('fake/dist/src/cli/main.js'),
      `import net from 'node:net'; import { chmodSync } from 'node:fs';
const path = process.argv[process.argv.indexOf('--listen') + 1];
net.createServer((s) => s.end()).listen(path, () => chmodSync(path, 0o666));\n`,
    );
    const impostor = await daemon(
      tmp.path('fake/dist/src/cli/main.js'),
      ['gateway', '--listen', tmp.path('fake.sock')],
      tmp.path('fake.sock'),
    );
    t.after(impostor.stop);
    // Another root socket open to all, held by a plain process: the real gateway running beside it changes nothing.
    const other = await holdSockets([{ address: tmp.path('other.sock'), mode: 0o666 }]);
    t.after(other.stop);

    const run = await secpolicy(['audit', '--json', '--quiet']);
    assert.equal(run.code, 0, run.stderr);
    const reports = JSON.parse(run.stdout) as SocketReport[];
    const at = (name: string) => reports.find((r) => r.path === tmp.path(name));

    assert.deepEqual(at('gw.sock')?.authenticatedBy, { pid: gateway.child.pid, command: 'gateway' });
    assert.deepEqual(codes(at('gw.sock')), ['AUTHENTICATED_BY_SECPOLICY:info', 'WORLD_WRITABLE:info']);
    assert.equal(at('gw.sock')?.holders[0]?.secpolicy, 'gateway');
    assert.deepEqual(at('px.sock')?.authenticatedBy, { pid: proxy.pid, command: 'proxy' });
    assert.deepEqual(codes(at('px.sock')), ['AUTHENTICATED_BY_SECPOLICY:info', 'WORLD_WRITABLE:info']);

    assert.equal(at('fake.sock')?.authenticatedBy, undefined);
    assert.deepEqual(codes(at('fake.sock')), ['ROOT_WORLD_ACCESSIBLE:high', 'WORLD_WRITABLE:medium']);
    assert.deepEqual(codes(at('other.sock')), ['ROOT_WORLD_ACCESSIBLE:high', 'WORLD_WRITABLE:medium']);

    // --fail-on high: the impostor and the plain holder fail it; ignored (a path and a glob), the rest passes
    // unless something outside this test is high; so compare with the same run ignoring only those two.
    const mine = ['--ignore', tmp.path('fake.sock'), '--ignore', `${tmp.dir}/o*.sock`];
    const failing = await secpolicy(['audit', '--json', '--quiet', '--fail-on', 'high', '--ignore', '/**']);
    assert.equal(failing.code, 0, 'ignoring every path leaves nothing to fail on');
    assert.deepEqual(JSON.parse(failing.stdout), []);
    const onlyOurs = await secpolicy(['audit', '--json', '--quiet', '--fail-on', 'high', ...mine]);
    const left = JSON.parse(onlyOurs.stdout) as SocketReport[];
    assert.ok(!left.some((r) => r.path === tmp.path('fake.sock') || r.path === tmp.path('other.sock')), 'both ignored');
    assert.ok(
      left.some((r) => r.path === tmp.path('gw.sock')),
      'the gateway is still listed',
    );
    const highElsewhere = left.some((r) => r.severity === 'high' || r.severity === 'critical');
    assert.equal(onlyOurs.code, highElsewhere ? 1 : 0);
    const notIgnored = await secpolicy(['audit', '--json', '--quiet', '--fail-on', 'high', '--ignore', tmp.path('fake.sock')]);
    assert.equal(notIgnored.code, 1, 'other.sock is still high');

    const human = await secpolicy(['audit', '--quiet', '--ignore', '/**', '--ignore', '@*']);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^0 listening sockets \(\d+ ignored\); no findings$/m);
    const table = await secpolicy(['audit', '--quiet'], { env: { COLUMNS: '200' } });
    assert.match(table.stdout, new RegExp(`${gateway.child.pid} secpolicy gateway`), 'the holder column names the gateway');
  },
);

test('secpolicy audit never cuts a socket name: a path breaks only after a slash', { skip: needRoot() }, async (t) => {
  const tmp = tempDir('secpolicy-audit-wrap-');
  t.after(() => tmp.cleanup());
  const name = 'a-socket-name-of-sixty-five-characters-that-fits-no-table-column.sock';
  const held = await holdSockets([{ address: tmp.path(name), mode: 0o666 }]);
  t.after(held.stop);
  // Only this socket: every other one the host has is ignored by its exact path.
  const others = (JSON.parse((await secpolicy(['audit', '--json', '--quiet'])).stdout) as SocketReport[])
    .map((r) => r.path)
    .filter((p) => p !== tmp.path(name));
  const out = await secpolicy(['audit', '--quiet', ...others.flatMap((p) => ['--ignore', p])]);
  assert.equal(out.code, 0, out.stderr);
  const lines = out.stdout.split('\n');
  // Both tables show the name whole, on one line; the directory part breaks after a slash.
  assert.equal(lines.filter((l) => l.includes(name)).length, 3, out.stdout);
  assert.match(out.stdout, /ROOT_WORLD_ACCESSIBLE/, 'codes are not cut either when the table is wide anyway');
  assert.ok(
    lines.some((l) => l.includes(`${tmp.dir}/`) && !l.includes(name)),
    `the directory is on a line of its own: ${out.stdout}`,
  );
  // East Asian wide characters take two columns: the table is aligned by display width.
  const wide = '套接字-ソケット.sock';
  const held2 = await holdSockets([{ address: tmp.path(wide), mode: 0o600 }]);
  t.after(held2.stop);
  const out2 = await secpolicy(['audit', '--quiet', '--ignore', tmp.path(name)], { env: { COLUMNS: '300' } });
  const row = out2.stdout.split('\n').find((l) => l.includes(wide));
  const header = out2.stdout.split('\n')[0]!;
  assert.ok(row, out2.stdout);
  const { default: stringWidth } = await import('string-width');
  assert.equal(stringWidth(row.slice(0, row.indexOf('0600'))), header.indexOf('MODE'), 'MODE lines up under its header');
});

test(
  'secpolicy audit recognises a socket-activated gateway (--listen systemd:NAME)',
  { skip: needRoot() || needCommand('systemd-socket-activate') },
  async (t) => {
    const tmp = tempDir('secpolicy-audit-served-');
    t.after(() => tmp.cleanup());
    writeFileSync(tmp.path('gateway.yaml'), 'rules:\n  - { name: root, who: { uid: 0 }, allow: ["GET /**"] }\n');
    const socket = tmp.path('activated.sock');
    const child = spawn(
      'systemd-socket-activate',
      [
        '-l',
        socket,
        '--fdname=gw',
        process.execPath,
        CLI,
        'gateway',
        '--listen',
        'systemd:gw',
        '--to',
        tmp.path('missing.sock'),
        '--policy',
        tmp.path('gateway.yaml'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stderr.on('data', (d) => (out += d));
    t.after(() => child.kill('SIGKILL'));
    await waitForPath(socket, child, () => out);
    chmodSync(socket, 0o666); // as SocketMode=0666 would
    // systemd-socket-activate execs the gateway on the first connection: make one (the file
    // exists from its bind, a moment before it listens: refused until then).
    let first: Socket | undefined;
    for (let attempt = 0; first === undefined && attempt < 200; attempt++) {
      const c = connect(socket);
      const ok = await new Promise<boolean>((resolve) => {
        c.once('connect', () => resolve(true));
        c.once('error', () => resolve(false));
      });
      if (ok) first = c;
      else await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(first, 'systemd-socket-activate listens on the socket');
    first.on('error', () => {});
    while (!/listening on the socket systemd passed/.test(out)) await once(child.stderr, 'data');
    first.destroy();

    const run = await secpolicy(['audit', '--json', '--quiet']);
    const mine = (JSON.parse(run.stdout) as SocketReport[]).find((r) => r.path === socket);
    assert.deepEqual(mine?.authenticatedBy, { pid: child.pid, command: 'gateway' });
    assert.deepEqual(codes(mine), ['AUTHENTICATED_BY_SECPOLICY:info', 'WORLD_WRITABLE:info']);
  },
);

test('a process of a gateway of several is named by the gateway that started it, whatever the order of their pids', () => {
  // A /proc of two processes, as after pids wrapped: the gateway's other process (pid 300)
  // has a lower pid than the gateway that started it (pid 32000). The scripts are this
  // package's own, so the checks of the script and its package.json are the real ones.
  const tmp = tempDir('secpolicy-audit-order-');
  try {
    const write = (pid: number, cmdline: string[], ppid: number): void => {
      mkdirSync(tmp.path(`proc/${pid}`), { recursive: true });
      writeFileSync(tmp.path(`proc/${pid}/cmdline`), cmdline.join('\0') + '\0');
      writeFileSync(tmp.path(`proc/${pid}/status`), `Name:\tnode\nPPid:\t${ppid}\n`);
      symlinkSync(process.execPath, tmp.path(`proc/${pid}/exe`));
    };
    const worker = join(dirname(CLI), 'gateway-worker.js');
    write(32000, [process.execPath, CLI, 'gateway', '--listen', '/run/gw.sock'], 1);
    write(300, [process.execPath, worker], 32000);
    const proc = tmp.path('proc');
    assert.deepEqual(secpolicyService(32000, '', proc), { command: 'gateway', listen: '/run/gw.sock', unauthenticated: [] });
    assert.deepEqual(secpolicyService(300, '', proc), {
      command: 'gateway',
      listen: '/run/gw.sock',
      unauthenticated: [],
      startedBy: 32000,
    });
    // A worker script run by anything but a gateway serves nothing.
    write(301, [process.execPath, worker], 1);
    assert.equal(secpolicyService(301, '', proc), undefined);
  } finally {
    tmp.cleanup();
  }
});
