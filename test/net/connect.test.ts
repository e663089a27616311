import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { chownSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { ErrorCode, Policy, Result, connect, peerOf, type Decision, type DeniedMessage, type SecpolicyError } from '../../src/index.js';
import { needCommand, needRoot, run, tempDir } from '../helpers/index.js';
import { DAEMON, rejectsWith, serve } from './fixtures.js';

/** A node server run as another user on a path in a directory that user owns: a squatter. */
async function squatter(t: TestContext, as: typeof DAEMON): Promise<string> {
  const tmp = tempDir('secpolicy-squat-');
  t.after(() => tmp.cleanup());
  const dir = tmp.path('run');
  mkdirSync(dir, { mode: 0o755 });
  chownSync(dir, as.uid, as.gid);
  const path = `${dir}/app.sock`;
  const script = `require('net').createServer((s) => s.on('error', () => {}).end('secret-please')).listen(process.argv[1], () => { require('fs').chmodSync(process.argv[1], 0o777); console.log('ready'); })`;
  const child = run(process.execPath, ['-e', script, path], { as });
  t.after(() => {
    child.kill();
  });
  const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
  assert.equal(chunk.toString().trim(), 'ready');
  return path;
}

test('connect: resolves with a verified socket; peerOf gives the server', { timeout: 60_000 }, async (t) => {
  const server = net.createServer((socket) => socket.on('error', () => {}).end('from the server'));
  const path = await serve(t, server);
  const socket = await connect({ path, policy: new Policy().uid(process.getuid!()).perms(0o777).program(process.execPath) });
  t.after(() => socket.destroy());
  const peer = peerOf(socket)!;
  assert.equal(peer.side, 'client');
  assert.equal(peer.pid, process.pid);
  assert.equal(peer.socketPath, path);
  socket.setEncoding('utf8');
  let data = '';
  for await (const chunk of socket) data += chunk;
  assert.equal(data, 'from the server');
});

test('connect: an abstract socket is verified too, and never passes a perms rule', { timeout: 60_000 }, async (t) => {
  const server = net.createServer((socket) => socket.on('error', () => {}).end('abstract'));
  const name = `\0secpolicy-test-connect-${process.pid}-${Date.now()}`;
  server.listen(name);
  await once(server, 'listening');
  t.after(() => server.close());
  const socket = await connect({ path: name, policy: new Policy().uid(process.getuid!()) });
  t.after(() => socket.destroy());
  assert.equal(peerOf(socket)!.socketPath, `@${name.slice(1)}`);
  let error: SecpolicyError | undefined;
  await rejectsWith(
    connect({ path: name, policy: new Policy().perms(0o777) }).catch((e) => {
      error = e;
      throw e;
    }),
    ErrorCode.DENIED,
  );
  assert.equal((error!.decision as Decision).result, Result.PERMS);
});

test(
  'connect: a server squatting the path as another user is denied before a byte is sent',
  { timeout: 60_000, skip: needRoot() },
  async (t) => {
    const path = await squatter(t, DAEMON);
    const published: DeniedMessage[] = [];
    const onDenied = (m: unknown) => published.push(m as DeniedMessage);
    subscribe('secpolicy:denied', onDenied);
    t.after(() => unsubscribe('secpolicy:denied', onDenied));

    let error: SecpolicyError | undefined;
    await rejectsWith(
      connect({ path, policy: new Policy().uid(0) }).catch((e) => {
        error = e;
        throw e;
      }),
      ErrorCode.DENIED,
    );
    const decision = error!.decision as Decision;
    assert.equal(decision.allowed, false);
    assert.equal(decision.result, Result.UID);
    assert.equal(decision.peer.uid, 1);
    assert.match(error!.message, new RegExp(`server at ${path} failed the policy`));
    const mine = published.filter((m) => m.source === 'connect');
    assert.equal(mine.length, 1);
    assert.equal(mine[0]!.socket.destroyed, true);

    // The same server passes a policy that expects it.
    const socket = await connect({ path, policy: new Policy().user('daemon') });
    t.after(() => socket.destroy());
    assert.equal(peerOf(socket)!.uid, 1);
  },
);

test(
  'connect: a missing socket and a stale socket reject with ERR_SECPOLICY_CONNECT and the errno as cause',
  { timeout: 60_000, skip: needCommand('/usr/bin/python3') },
  async (t) => {
    const tmp = tempDir('secpolicy-connect-');
    t.after(() => tmp.cleanup());
    const missing = tmp.path('missing.sock');
    await assert.rejects(connect({ path: missing, policy: new Policy().uid(0) }), (e: SecpolicyError) => {
      assert.equal(e.code, ErrorCode.CONNECT);
      assert.equal((e.cause as NodeJS.ErrnoException).code, 'ENOENT');
      assert.equal(e.path, missing);
      return true;
    });
    // python binds and exits without unlinking: a socket file nobody listens on.
    const stale = tmp.path('stale.sock');
    const py = await run('/usr/bin/python3', [
      '-c',
      'import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])',
      stale,
    ]).output();
    assert.equal(py.code, 0, py.stderr);
    await assert.rejects(connect({ path: stale, policy: new Policy().uid(0) }), (e: SecpolicyError) => {
      assert.equal(e.code, ErrorCode.CONNECT);
      assert.equal((e.cause as NodeJS.ErrnoException).code, 'ECONNREFUSED');
      return true;
    });
  },
);

test(
  'connect: a full accept queue (EAGAIN) is tried again until the server accepts',
  { timeout: 60_000, skip: needCommand('/usr/bin/python3') },
  async (t) => {
    const tmp = tempDir('secpolicy-connect-');
    t.after(() => tmp.cleanup());
    const path = tmp.path('busy.sock');
    // A server with a backlog of one that starts accepting only when told to.
    const script = [
      'import socket, sys',
      's = socket.socket(socket.AF_UNIX)',
      's.bind(sys.argv[1])',
      's.listen(0)',
      'print("ready", flush=True)',
      'sys.stdin.readline()',
      'held = [s.accept() for _ in range(2)]',
      'sys.stdin.readline()',
    ].join('\n');
    const server = run('/usr/bin/python3', ['-c', script, path]);
    t.after(() => server.kill());
    await once(server.stdout!, 'data');
    const filler = net.connect(path).on('error', () => {});
    t.after(() => filler.destroy());
    await once(filler, 'connect');
    let settled = false;
    const attempt = connect({ path, policy: new Policy().uid(process.getuid!()), timeout: 30_000 }).finally(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(settled, false, 'still trying while the queue is full');
    server.stdin!.write('accept\n');
    const socket = await attempt;
    t.after(() => socket.destroy());
    assert.equal(peerOf(socket)!.pid, server.pid);
  },
);

test('connect: the timeout covers verification; an abort signal stops the attempt', { timeout: 60_000 }, async (t) => {
  const server = net.createServer((socket) => socket.resume());
  const path = await serve(t, server);
  const hanging = new Policy().callback(() => new Promise<boolean>(() => {}));
  await rejectsWith(connect({ path, policy: hanging, timeout: 150 }), ErrorCode.TIMEOUT);
  const controller = new AbortController();
  const attempt = connect({ path, policy: hanging, signal: controller.signal });
  setTimeout(() => controller.abort(), 50);
  await rejectsWith(attempt, ErrorCode.ABORTED);
  await rejectsWith(connect({ path, policy: hanging, signal: AbortSignal.abort() }), ErrorCode.ABORTED);
});

test('connect: options are validated up front, naming the field', async () => {
  const invalid = (promise: Promise<unknown>, field: RegExp) => rejectsWith(promise, ErrorCode.INVALID_ARG, field);
  const policy = new Policy().uid(0);
  await invalid(connect(undefined as never), /options/);
  await invalid(connect({ path: '', policy }), /options\.path/);
  await invalid(connect({ path: '/x\0y', policy }), /options\.path/);
  await invalid(connect({ path: '/x', policy: {} as never }), /options\.policy/);
  await invalid(connect({ path: '/x', policy, timeout: 0 }), /options\.timeout/);
  await invalid(connect({ path: '/x', policy, signal: 'stop' as never }), /options\.signal/);
});
