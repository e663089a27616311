import assert from 'node:assert/strict';
import { once } from 'node:events';
import type net from 'node:net';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ErrorCode, Policy, connect, createServer, isSecpolicyError, type Decision } from '../../src/index.js';
import { run } from '../helpers/index.js';
import { serve } from './fixtures.js';

const SILENT = 1000;
const HANDSHAKE_TIMEOUT = 5000;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** A separate process that opens `count` connections, never sends a byte, and reports. */
function silentPeers(path: string, count: number) {
  const script = `
    const net = require('net');
    const [path, total] = [process.argv[1], +process.argv[2]];
    let started = 0, open = 0, closed = 0;
    const attempt = () => {
      const s = net.connect(path);
      let connected = false;
      s.resume(); // reads (and drops) what it is sent, never writes
      s.on('connect', () => {
        connected = true;
        if (++open === total) console.log('open');
        next();
        s.on('close', () => { if (++closed === total) { console.log('closed'); process.exit(0); } });
      });
      // A full accept queue answers EAGAIN: try that connection again a little later.
      s.on('error', (e) => {
        if (connected) return;
        if (e.code === 'EAGAIN') return void setTimeout(attempt, 20);
        console.error(e.code);
        process.exit(3);
      });
    };
    const next = () => { if (started < total) { started++; attempt(); } };
    for (let i = 0; i < 64; i++) next(); // at most 64 connects in flight
  `;
  return run(process.execPath, ['-e', script, path, String(count)]);
}

test(
  `load: ${SILENT} silent peers against a challenge server are all cut at the handshake timeout while others are served`,
  { timeout: 120_000 },
  async (t) => {
    const key = new Uint8Array(32).fill(7);
    const sign = (challenge: Uint8Array) => {
      const out = new Uint8Array(challenge.length);
      for (let i = 0; i < challenge.length; i++) out[i] = challenge[i]! ^ key[i % key.length]!;
      return out;
    };
    const serverPolicy = new Policy().uid(process.getuid!()).challengeSend(
      () => crypto.getRandomValues(new Uint8Array(32)),
      (challenge, response) => Buffer.from(sign(challenge)).equals(response),
    );
    let served = 0;
    const server = createServer({ policy: serverPolicy, handshakeTimeout: HANDSHAKE_TIMEOUT }, (socket) => {
      served++;
      socket.end('served');
    });
    const timeouts: Error[] = [];
    const otherDenials: unknown[] = [];
    server.on('denied', (reason: Decision | Error) => {
      if (isSecpolicyError(reason) && reason.code === ErrorCode.TIMEOUT) timeouts.push(reason);
      else otherDenials.push(reason);
    });
    const path = await serve(t, server);

    gc();
    const before = process.memoryUsage();
    const peers = silentPeers(path, SILENT);
    t.after(() => peers.kill());
    const [line] = (await once(peers.stdout!, 'data')) as [Buffer];
    assert.equal(line.toString().trim(), 'open');

    // Well-behaved clients answer the challenge and are served, while silent peers are pending.
    const clientPolicy = new Policy().uid(process.getuid!()).challengeReceive(sign);
    const pendingWhenServed: number[] = [];
    for (let round = 0; round < 4; round++) {
      const batch = Array.from({ length: 5 }, async () => {
        const socket = await connect({ path, policy: clientPolicy, timeout: 60_000 });
        pendingWhenServed.push(SILENT - timeouts.length);
        let text = '';
        for await (const chunk of socket as AsyncIterable<Buffer>) text += chunk.toString();
        return text;
      });
      assert.deepEqual(await Promise.all(batch), Array(5).fill('served'));
    }
    assert.equal(served, 20);
    assert.ok(
      pendingWhenServed.some((n) => n > 0),
      'clients were served while silent peers were waiting',
    );

    const out = await peers.output();
    assert.equal(out.stdout.trim().split('\n').pop(), 'closed', out.stderr);
    assert.equal(timeouts.length, SILENT, `every silent peer is cut at the timeout (other denials: ${otherDenials.length})`);
    assert.deepEqual(otherDenials, []);

    // Nothing of the silent peers is kept once they are gone (loose bounds: no timing, no exact figures).
    await new Promise<void>((resolve) => server.getConnections((_e, n) => (assert.equal(n, 0), resolve())));
    timeouts.length = 0;
    gc();
    const after = process.memoryUsage();
    const heapGrowth = after.heapUsed - before.heapUsed;
    assert.ok(heapGrowth < 16 * 1024 * 1024, `heap grew by ${(heapGrowth / 1048576).toFixed(1)} MiB`);
    assert.ok(after.rss - before.rss < 256 * 1024 * 1024, `rss grew by ${((after.rss - before.rss) / 1048576).toFixed(1)} MiB`);
  },
);

test('load: sockets in the handshake do not pile up listeners or timers once cut', { timeout: 60_000 }, async (t) => {
  const server = createServer({ policy: new Policy().callback(() => new Promise<boolean>(() => {})), handshakeTimeout: 100 });
  const path = await serve(t, server);
  const cut: net.Socket[] = [];
  server.on('denied', (_reason: unknown, socket: net.Socket) => cut.push(socket));
  const peers = silentPeers(path, 50);
  t.after(() => peers.kill());
  await peers.output();
  assert.equal(cut.length, 50);
  for (const socket of cut) {
    assert.equal(socket.destroyed, true);
    assert.equal(socket.listenerCount('error'), 0, 'the handshake error guard is removed');
  }
});
