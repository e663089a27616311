/**
 * The perms rule reads the mode of the socket file the connection came through, at apply
 * time (on the server side through the listener's held fd: perms-held.test.ts); abstract
 * and unnamed sockets have no file, so the rule never passes for them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import { Policy, Result, listen } from '../../src/index.js';
import { connection } from '../helpers/connection.js';
import { needNative, tempDir } from '../helpers/index.js';

// The server side proves its socket file through sock_diag (which qemu-user lacks) before it reads the mode.
test(
  'perms passes for the exact mode of the socket file after each chmod, and fails for any other',
  { skip: needNative('netlink') },
  async (t) => {
    const c = await connection();
    t.after(() => c.close());
    for (const mode of [0o777, 0o770, 0o660, 0o600, 0o000]) {
      chmodSync(c.path, mode);
      const pass = await new Policy().perms(mode).apply(c.socket);
      assert.equal(pass.allowed, true, `mode 0${mode.toString(8)}: ${JSON.stringify(pass.failures)}`);
      assert.equal(pass.peer.perms, mode);
      const other = mode === 0o600 ? 0o660 : 0o600;
      const fail = await new Policy().perms(other).apply(c.socket);
      assert.equal(fail.result, Result.PERMS);
      assert.equal(fail.failures[0]!.actual, mode);
      assert.equal(fail.failures[0]!.expected, other);
    }
  },
);

test('an extra group bit on the socket file fails perms(0o600)', { skip: needNative('netlink') }, async (t) => {
  const c = await connection();
  t.after(() => c.close());
  chmodSync(c.path, 0o620);
  const d = await new Policy().perms(0o600).apply(c.socket);
  assert.equal(d.result, Result.PERMS);
  assert.equal(d.failures[0]!.actual, 0o620);
  assert.match(d.failures[0]!.message, /socket file mode 0620 is not 0600/);
});

test(
  'a socket file removed before the first read: perms is unknown on the server side, and a file put at the path is not read',
  { skip: needNative('netlink') },
  async (t) => {
    const c = await connection();
    t.after(() => c.close());
    rmSync(c.path);
    const gone = await new Policy().perms(0o777).apply(c.socket);
    assert.equal(gone.result, Result.PERMS);
    assert.equal(gone.failures[0]!.unknown, true);
    assert.match(gone.failures[0]!.message, /cannot open the socket file .*: ENOENT/);
    writeFileSync(c.path, '', { mode: 0o777 });
    chmodSync(c.path, 0o777);
    const swapped = await new Policy().perms(0o777).apply(c.socket);
    assert.equal(swapped.result, Result.PERMS);
    assert.equal(swapped.failures[0]!.unknown, true);
    assert.equal(swapped.failures[0]!.actual, undefined);
  },
);

test('a socket path given to apply() is stat()ed: a missing file or a non-socket fails perms with a reason', async (t) => {
  const c = await connection();
  t.after(() => c.close());
  rmSync(c.path);
  const gone = await new Policy().perms(0o777).apply(c.socket, { socketPath: c.path });
  assert.equal(gone.result, Result.PERMS);
  assert.match(gone.failures[0]!.message, /cannot stat the socket file/);
  writeFileSync(c.path, '', { mode: 0o777 });
  chmodSync(c.path, 0o777);
  const swapped = await new Policy().perms(0o777).apply(c.socket, { socketPath: c.path });
  assert.equal(swapped.result, Result.PERMS);
  assert.match(swapped.failures[0]!.message, /no longer a socket/);
});

test('perms never passes for an abstract socket', async (t) => {
  const c = await connection({ abstract: true });
  t.after(() => c.close());
  for (const mode of [0o777, 0o666, 0o600, 0]) {
    const d = await new Policy().perms(mode).apply(c.socket);
    assert.equal(d.result, Result.PERMS);
    assert.equal(d.failures[0]!.actual, undefined);
    assert.match(d.failures[0]!.message, /abstract sockets have no file permissions/);
  }
  assert.equal((await new Policy().apply(c.socket)).peer.socketPath, `@${c.path.slice(1)}`);
});

test('perms never passes for an unnamed socket (the client end of a connection, seen from the server)', async (t) => {
  const c = await connection();
  t.after(() => c.close());
  // Treating our accepted socket as the client side makes the rule read the peer's address: unnamed.
  const d = await new Policy().perms(0o777).apply(c.socket, { side: 'client' });
  assert.equal(d.result, Result.PERMS);
  assert.match(d.failures[0]!.message, /unnamed/);
});

// Runs under qemu-user too, where no sock_diag exists: there the file listen() bound in a
// directory nobody else may write to, and opened right after, is proof enough.
test('a socket file made by listen() is read through the fd held since the bind, with or without sock_diag', async (t) => {
  const tmp = tempDir('secpolicy-perms-listen-');
  t.after(() => tmp.cleanup());
  const path = tmp.path('s.sock');
  const server = net.createServer({ pauseOnConnect: true });
  const accepted: net.Socket[] = [];
  server.on('connection', (s) => accepted.push(s));
  await listen(server, path, { mode: 0o660 });
  const client = net.connect(path);
  t.after(() => {
    client.destroy();
    for (const s of accepted) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  while (accepted.length === 0) await once(server, 'connection');
  const socket = accepted[0]!;
  assert.equal(new Policy().perms(0o660).applySync(socket).allowed, true);
  chmodSync(path, 0o600);
  assert.equal(new Policy().perms(0o600).applySync(socket).allowed, true, 'a chmod of the bound file is seen');
  // Another file at the path is not the one the connection came through.
  rmSync(path);
  writeFileSync(path, '');
  chmodSync(path, 0o666);
  const d = new Policy().perms(0o600).applySync(socket);
  assert.equal(d.allowed, true, JSON.stringify(d.failures));
  assert.equal(new Policy().perms(0o666).applySync(socket).result, Result.PERMS);
});
