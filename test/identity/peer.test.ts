/** Peer: lazy attributes of a real connection, read once, and toJSON(). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readdirSync, realpathSync } from 'node:fs';
import { Peer, Policy } from '../../src/index.js';
import { needCommand, needNative, needRoot } from '../helpers/index.js';
import { connection, DAEMON } from '../helpers/connection.js';

const CORE = ['pid', 'uid', 'gid', 'groups', 'user', 'group', 'program', 'perms', 'label', 'socketPath'];

test(
  'toJSON() of a peer run as daemon with group adm',
  { skip: needRoot() || needCommand('setpriv') || needNative('program') },
  async (t) => {
    const c = await connection({ as: { ...DAEMON, groups: [4] }, mode: 0o666 });
    t.after(() => c.close());
    const peer = new Peer(c.socket);
    const json = peer.toJSON();
    for (const key of CORE) assert.ok(key in json, `toJSON has ${key}`);
    assert.deepEqual(Object.fromEntries(CORE.map((k) => [k, json[k]])), {
      pid: c.peer.pid,
      uid: 1,
      gid: 1,
      groups: [4],
      user: 'daemon',
      group: 'daemon',
      program: realpathSync(process.execPath),
      perms: 0o666,
      label: undefined,
      socketPath: c.path,
    });
    assert.equal(peer.side, 'server');
    // JSON round trip: plain data only.
    assert.equal(JSON.parse(JSON.stringify(peer)).user, 'daemon');
  },
);

// The server side proves its socket file through sock_diag before it reads the mode.
test('attributes are read once per connection and keep their first answer', { skip: needNative('netlink') }, async (t) => {
  const c = await connection();
  t.after(() => c.close());
  const peer = new Peer(c.socket);
  const first = peer.attempt('perms');
  chmodSync(c.path, 0o600);
  assert.deepEqual(peer.attempt('perms'), first, 'the same answer: no second stat');
  assert.equal(peer.perms, 0o777);
  assert.equal(new Peer(c.socket).perms, 0o600, 'a new Peer (a new apply) reads afresh');
  const missing = peer.attempt('no-such-attribute');
  assert.equal(missing.ok, false);
});

test('a Peer made on the client end reads the server through getpeername', async (t) => {
  const c = await connection();
  t.after(() => c.close());
  const asClient = new Peer(c.socket, { side: 'client' });
  assert.equal(asClient.side, 'client');
  assert.equal(asClient.socketPath, undefined, 'the other end of an accepted socket is unnamed');
  assert.equal(new Peer(c.socket, { socketPath: '/given/path' }).socketPath, '/given/path');
});

test(
  'applying a policy again to one connection reuses its pin: no pidfd or listener piles up',
  { skip: needNative('program') },
  async (t) => {
    const c = await connection();
    t.after(() => c.close());
    const policy = new Policy().program(process.execPath);
    const openFds = () => readdirSync('/proc/self/fd').length;
    assert.equal(policy.applySync(c.socket).allowed, true);
    const fds = openFds();
    const listeners = c.socket.listenerCount('close');
    for (let i = 0; i < 50; i++) assert.equal(policy.applySync(c.socket).allowed, true);
    assert.equal(openFds(), fds);
    assert.equal(c.socket.listenerCount('close'), listeners);
  },
);
