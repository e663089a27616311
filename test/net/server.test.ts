import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import type net from 'node:net';
import { test } from 'node:test';
import {
  createServer,
  ErrorCode,
  Policy,
  Result,
  isSecpolicyError,
  peerOf,
  type Decision,
  type DeniedMessage,
  type Peer,
} from '../../src/index.js';
import { needRoot, nodeClient, run, tempDir } from '../helpers/index.js';
import { DAEMON, holdingPeer, record, serve } from './fixtures.js';

type Denied = [Decision | Error, net.Socket];

test(
  'createServer: the listener and "connection" see allowed peers only; a denied socket is destroyed and reported',
  { timeout: 60_000, skip: needRoot() },
  async (t) => {
    const seen: Peer[] = [];
    const server = createServer({ policy: new Policy().uid(0) }, (socket, peer) => {
      seen.push(peer);
      socket.end(`hello uid ${peer.uid}`);
    });
    const connections = record<[net.Socket]>(server, 'connection');
    const denied = record<Denied>(server, 'denied');
    const path = await serve(t, server);

    const root = await nodeClient(path, { send: 'x' }).output();
    assert.equal(root.stdout, 'hello uid 0');

    const other = await nodeClient(path, { as: DAEMON, send: 'x', holdMs: 300 }).output();
    assert.equal(other.stdout, '', 'a denied peer receives no byte');
    assert.equal(seen.length, 1);
    assert.equal(connections.length, 1);
    assert.equal(peerOf(connections[0]![0]), seen[0]);
    assert.equal(denied.length, 1);
    const [decision, socket] = denied[0]! as [Decision, net.Socket];
    assert.equal(decision.allowed, false);
    assert.equal(decision.result, Result.UID);
    assert.equal(decision.peer.uid, 1);
    assert.equal(socket.destroyed, true);
    assert.equal(peerOf(socket), undefined);
  },
);

test(
  'createServer: an async callback is awaited before the application sees the peer',
  { timeout: 60_000, skip: needRoot() },
  async (t) => {
    const server = createServer({ policy: new Policy().callback(async (peer) => peer.uid === 1) }, (socket, peer) =>
      socket.end(`user ${peer.user}`),
    );
    const denied = record<Denied>(server, 'denied');
    const path = await serve(t, server);
    assert.equal((await nodeClient(path, { as: DAEMON }).output()).stdout, 'user daemon');
    assert.equal((await nodeClient(path, { holdMs: 300 }).output()).stdout, '');
    assert.equal(denied.length, 1);
    assert.equal((denied[0]![0] as Decision).result, Result.CALLBACK);
  },
);

test('createServer: a verification that never finishes is cut at the handshake timeout', { timeout: 60_000 }, async (t) => {
  let calls = 0;
  const server = createServer(
    { policy: new Policy().callback(() => (calls++, new Promise<boolean>(() => {}))), handshakeTimeout: 150 },
    () => assert.fail('the listener must not run'),
  );
  const path = await serve(t, server);
  const deniedEvent = once(server, 'denied') as Promise<Denied>;
  // This peer never hangs up by itself: it exits only when the server closes its connection.
  const client = holdingPeer(t, path);
  const [error, socket] = await deniedEvent;
  assert.ok(isSecpolicyError(error));
  assert.equal(error.code, ErrorCode.TIMEOUT);
  assert.equal(socket.destroyed, true);
  assert.equal(calls, 1);
  const out = await client.output();
  assert.deepEqual([out.code, out.stdout], [0, '']);
});

test(
  'createServer: maxConnectionsPerUid denies with Result.LIMIT and frees the slot on close',
  { timeout: 60_000, skip: needRoot() },
  async (t) => {
    const sockets: net.Socket[] = [];
    const closes: Promise<unknown>[] = [];
    const server = createServer({ policy: new Policy().uid([0, 1]), maxConnectionsPerUid: 2 }, (socket) => {
      sockets.push(socket);
      closes.push(once(socket, 'close'));
      socket.resume();
      socket.write('in');
    });
    const denied = record<Denied>(server, 'denied');
    const path = await serve(t, server);
    const holders = [holdingPeer(t, path, DAEMON), holdingPeer(t, path, DAEMON)];
    while (sockets.length < 2) await once(server, 'connection');
    const holderCloses = closes.slice(0, 2);

    const third = await nodeClient(path, { as: DAEMON, holdMs: 300 }).output();
    assert.equal(third.stdout, '');
    assert.equal(denied.length, 1);
    const decision = denied[0]![0] as Decision;
    assert.equal(decision.result, Result.LIMIT);
    assert.equal(decision.peer.uid, 1);
    assert.deepEqual(
      decision.failures.map((f) => [f.rule, f.expected, f.actual]),
      [['maxConnectionsPerUid', 2, 2]],
    );
    assert.match(decision.failures[0]!.message, /uid 1 already holds 2 connections/);

    // Another uid has its own count.
    assert.equal((await nodeClient(path, { holdMs: 100 }).output()).stdout, 'in');
    // A closed connection gives its slot back.
    holders[0]!.stdin!.end();
    assert.equal((await holders[0]!.output()).stdout, 'in');
    await Promise.race(holderCloses);
    assert.equal((await nodeClient(path, { as: DAEMON, holdMs: 100 }).output()).stdout, 'in');
    assert.equal(denied.length, 1);
  },
);

test(
  'createServer: denials are published on secpolicy:denied, decisions on secpolicy:decision',
  { timeout: 60_000, skip: needRoot() },
  async (t) => {
    const deniedMessages: DeniedMessage[] = [];
    const decisions: Decision[] = [];
    const onDenied = (m: unknown) => deniedMessages.push(m as DeniedMessage);
    const onDecision = (m: unknown) => decisions.push(m as Decision);
    subscribe('secpolicy:denied', onDenied);
    subscribe('secpolicy:decision', onDecision);
    t.after(() => {
      unsubscribe('secpolicy:denied', onDenied);
      unsubscribe('secpolicy:decision', onDecision);
    });
    const server = createServer({ policy: new Policy().user('root') }, (socket) => socket.end('ok'));
    const path = await serve(t, server);
    await nodeClient(path).output();
    await nodeClient(path, { as: DAEMON, holdMs: 200 }).output();
    const mine = deniedMessages.filter((m) => m.source === 'server' && 'allowed' in m.reason && m.reason.peer.socketPath === path);
    assert.equal(mine.length, 1);
    assert.equal((mine[0]!.reason as Decision).result, Result.USER);
    assert.equal(mine[0]!.socket.destroyed, true);
    const here = decisions.filter((d) => d.peer.socketPath === path);
    assert.deepEqual(
      here.map((d) => d.allowed),
      [true, false],
    );
  },
);

test('createServer: NODE_DEBUG=secpolicy logs refused connections', { timeout: 60_000 }, async (t) => {
  const tmp = tempDir('secpolicy-debuglog-');
  t.after(() => tmp.cleanup());
  const index = new URL('../../src/index.js', import.meta.url).href;
  const script = `
    const { createServer, Policy } = await import(${JSON.stringify(index)});
    const net = await import('node:net');
    const server = createServer({ policy: new Policy().uid(process.getuid()), maxConnectionsPerUid: 1 }, () => {});
    server.listen(process.argv[1], () => {
      const first = net.connect(process.argv[1]);
      first.on('connect', () => {
        const second = net.connect(process.argv[1]);
        second.on('close', () => { first.destroy(); server.close(); });
        second.on('error', () => {});
      });
    });`;
  const out = await run(process.execPath, ['--input-type=module', '-e', script, tmp.path('s.sock')], {
    env: { ...process.env, NODE_DEBUG: 'secpolicy' },
  }).output();
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stderr, new RegExp(`SECPOLICY \\d+: server: denied pid=\\d+ uid=${process.getuid!()} gid=\\d+ result=0x4000: `));
});

test('createServer: options are validated up front, naming the field', () => {
  const policy = new Policy().uid(0);
  const code = (fn: () => unknown, field: RegExp) =>
    assert.throws(fn, (e: unknown) => isSecpolicyError(e) && e.code === ErrorCode.INVALID_ARG && field.test(e.message));
  code(() => createServer({} as never), /options\.policy/);
  code(() => createServer({ policy: { uid: 0 } } as never), /options\.policy/);
  code(() => createServer({ policy, handshakeTimeout: -1 }), /options\.handshakeTimeout/);
  code(() => createServer({ policy, maxConnectionsPerUid: 0 }), /options\.maxConnectionsPerUid/);
  code(() => createServer({ policy, maxConnectionsPerUid: 1.5 }), /options\.maxConnectionsPerUid/);
  code(() => createServer({ policy }, 'listener' as never), /listener/);
  code(() => createServer(null as never), /options/);
});

test('createServer: net.Server options pass through (pauseOnConnect)', { timeout: 60_000, skip: needRoot() }, async (t) => {
  const server = createServer({ policy: new Policy().uid(0), pauseOnConnect: true }, (socket) => {
    assert.equal(socket.isPaused(), true);
    socket.end('paused');
  });
  const path = await serve(t, server);
  assert.equal((await nodeClient(path).output()).stdout, 'paused');
});

test('peerOf: the verified peer is not a property anyone can read, copy or set on the socket', async (t) => {
  const me = process.getuid!();
  const accepted: net.Socket[] = [];
  const server = createServer({ policy: new Policy().uid(me) }, (socket) => accepted.push(socket));
  const path = await serve(t, server);
  const { createConnection } = await import('node:net');
  const clients = [createConnection(path), createConnection(path)];
  t.after(() => clients.forEach((c) => c.destroy()));
  while (accepted.length < 2) await once(server, 'connection');
  const [verified, other] = accepted as [net.Socket, net.Socket];
  const peer = peerOf(verified)!;
  assert.equal(peer.uid, me);
  // Nothing reachable through the socket's own keys leads to the Peer.
  for (const key of Reflect.ownKeys(verified)) {
    assert.notEqual(Reflect.get(verified, key), peer, `socket[${String(key)}] is the peer`);
  }
  // A socket the verifier never saw, given every own property of a verified one, is still unverified.
  const unverified = clients[0]!;
  for (const key of Reflect.ownKeys(verified)) {
    const d = Object.getOwnPropertyDescriptor(verified, key)!;
    try {
      Object.defineProperty(unverified, key, d);
    } catch {
      // A non-configurable property of the client's own: left as it is.
    }
  }
  assert.equal(peerOf(unverified), undefined);
  assert.notEqual(peerOf(other), undefined);
  assert.notEqual(peerOf(other), peer, 'each connection has its own Peer');
  for (const value of [undefined, null, 1, 'socket', {}, Object.create(verified)]) assert.equal(peerOf(value as never), undefined);
});
