/**
 * Wire compatibility with C: test/challenge/c/peer.c, written from docs/protocol.md with the
 * header as the C struct itself, is compiled here with the system cc and run as client and
 * as server against this package. Its HMAC-SHA256 is its own (OpenSSL is not assumed).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { Policy, Result } from '../../src/index.js';
import { needRoot, run, tempDir } from '../helpers/index.js';
import { acceptor, buildCPeer, listening, needCc, reap } from './peers.js';

const skip = needCc();
let cPeer = '';
const build = tempDir('secpolicy-cpeer-');

before(() => {
  if (!skip) cPeer = buildCPeer(build.dir);
});
after(build.cleanup);

const shift = (c: Uint8Array) => c.map((b) => (b << 1) & 0xff);
const shifted = (c: Uint8Array, r: Uint8Array) => r.length === c.length && c.every((b, i) => r[i] === ((b << 1) & 0xff));
const EXAMPLE = Buffer.from(Array.from({ length: 10 }, (_, i) => 0x41 + i * 13));

const policies = {
  // The C peer sends; we answer.
  send: () => new Policy().challengeReceive(shift),
  // The C peer answers; we send the C library's example challenge.
  recv: () => new Policy().challengeSend(() => EXAMPLE, shifted),
  mutual: () => new Policy().challengeSend(() => randomBytes(10), shifted).challengeReceive(shift),
};

/** Reads from `socket` until `text` has arrived (or the stream ends). */
async function receive(socket: net.Socket, text: string): Promise<string> {
  let got = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => (got += d));
  while (got.length < text.length && !socket.readableEnded) await Promise.race([once(socket, 'data'), once(socket, 'end')]);
  return got;
}

/** After a verified exchange: C's first bytes reach us, ours reach C, and C exits 0. */
async function talk(socket: net.Socket, c: ReturnType<typeof run>, stdout: string): Promise<void> {
  assert.equal(await receive(socket, 'C-APP\n'), 'C-APP\n');
  socket.end('from-ts\n');
  const out = await c.output();
  assert.equal(out.code, 0, out.stderr);
  assert.equal(out.stdout, stdout);
}

for (const mode of ['send', 'recv', 'mutual'] as const) {
  test(`TypeScript server, C client: ${mode}`, { skip }, async (t) => {
    const a = await acceptor(t);
    const c = run(cPeer, ['client', a.path, mode]);
    t.after(() => reap(c));
    const socket = await a.next();
    const d = await policies[mode]().apply(socket);
    assert.equal(d.allowed, true, JSON.stringify(d.failures));
    await talk(socket, c, 'ok\nfrom-ts\n');
  });

  test(`TypeScript client, C server: ${mode}`, { skip }, async (t) => {
    const dir = tempDir('secpolicy-cserver-');
    t.after(dir.cleanup);
    const path = dir.path('s');
    const c = run(cPeer, ['server', path, mode]);
    t.after(() => reap(c));
    await listening(c);
    const socket = net.connect(path);
    t.after(() => socket.destroy());
    await once(socket, 'connect');
    const d = await policies[mode]().apply(socket);
    assert.equal(d.allowed, true, JSON.stringify(d.failures));
    await talk(socket, c, 'listening\nok\nfrom-ts\n');
  });
}

test('a wrong answer from TypeScript is refused by the C side; a wrong answer from C sets Result.CHALLENGE', { skip }, async (t) => {
  const a = await acceptor(t);
  const c1 = run(cPeer, ['client', a.path, 'send']);
  t.after(() => reap(c1));
  const s1 = await a.next();
  await new Policy().challengeReceive((ch) => ch.map((b) => b >> 1)).apply(s1);
  const out1 = await c1.output();
  assert.equal(out1.code, 1);
  assert.equal(out1.stdout, 'refused\n');

  const c2 = run(cPeer, ['client', a.path, 'recv']);
  t.after(() => reap(c2));
  const s2 = await a.next();
  // The C peer answers "each byte << 1"; a verifier expecting something else refuses it.
  const d = await new Policy()
    .challengeSend(
      () => EXAMPLE,
      (ch, r) => r.length === ch.length && ch.every((b, i) => r[i] === b),
    )
    .apply(s2);
  assert.equal(d.result, Result.CHALLENGE);
});

for (const side of ['server', 'client'] as const) {
  test(`shared secret with a key file: TypeScript ${side}, C ${side === 'server' ? 'client' : 'server'}`, { skip }, async (t) => {
    const dir = tempDir('secpolicy-csecret-');
    t.after(dir.cleanup);
    const keyFile = dir.path('key');
    writeFileSync(keyFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    const policy = new Policy().sharedSecret({ keyFile });
    let socket: net.Socket;
    let c;
    if (side === 'server') {
      const a = await acceptor(t);
      c = run(cPeer, ['client', a.path, 'secret', keyFile]);
      t.after(() => reap(c!));
      socket = await a.next();
    } else {
      c = run(cPeer, ['server', dir.path('s'), 'secret', keyFile]);
      t.after(() => reap(c!));
      await listening(c);
      socket = net.connect(dir.path('s'));
      t.after(() => socket.destroy());
      await once(socket, 'connect');
    }
    const d = await policy.apply(socket);
    assert.equal(d.allowed, true, JSON.stringify(d.failures));
    await talk(socket, c, (side === 'server' ? '' : 'listening\n') + 'ok\nfrom-ts\n');
  });
}

test('shared secret with different keys: C refuses and TypeScript sets Result.CHALLENGE', { skip }, async (t) => {
  const a = await acceptor(t);
  const cKey = a.tmp.path('c-key');
  writeFileSync(cKey, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  const c = run(cPeer, ['client', a.path, 'secret', cKey]);
  t.after(() => reap(c));
  const socket = await a.next();
  const d = await new Policy().sharedSecret(randomBytes(32)).apply(socket);
  assert.equal(d.result, Result.CHALLENGE);
  socket.end();
  const out = await c.output();
  assert.equal(out.code, 1);
  assert.equal(out.stdout, 'refused\n');
});

test('a C client running as another user: the exchange runs only once the identity rules pass', { skip: skip || needRoot() }, async (t) => {
  const a = await acceptor(t, 0o777);
  const daemon = { uid: 1, gid: 1 };
  const ok = run(cPeer, ['client', a.path, 'recv'], { as: daemon });
  t.after(() => reap(ok));
  const s1 = await a.next();
  const d1 = await new Policy()
    .uid(1)
    .challengeSend(() => EXAMPLE, shifted)
    .apply(s1);
  assert.equal(d1.allowed, true, JSON.stringify(d1.failures));
  await talk(s1, ok, 'ok\nfrom-ts\n');

  const denied = run(cPeer, ['client', a.path, 'recv'], { as: daemon });
  t.after(() => reap(denied));
  const s2 = await a.next();
  const d2 = await new Policy()
    .uid(0)
    .challengeSend(() => EXAMPLE, shifted)
    .apply(s2);
  assert.equal(d2.result, Result.UID, 'no challenge flag: the exchange never ran');
  s2.destroy();
  const out = await denied.output();
  assert.equal(out.code, 2);
  assert.match(out.stderr, /stream ended/, 'the C client never received a REQUEST');
});
