/** The diagnostics channels and the debug log: exported names, typed events, one line per event. */
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import {
  CHANNELS,
  DECISION_CHANNEL,
  DENIED_CHANNEL,
  Policy,
  createProxy,
  closeProxy,
  guard,
  type Decision,
  type SecpolicyError,
} from '../../src/index.js';
import { needCommand, needRoot, run, tempDir } from '../helpers/index.js';
import { gatewayFixture } from '../gateway/helpers.js';
import { DAEMON, serve } from './fixtures.js';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

test('channel names are exported constants', () => {
  assert.equal(DECISION_CHANNEL, 'secpolicy:decision');
  assert.equal(DENIED_CHANNEL, 'secpolicy:denied');
  assert.deepEqual({ ...CHANNELS }, { decision: DECISION_CHANNEL, denied: DENIED_CHANNEL });
  assert.ok(Object.isFrozen(CHANNELS));
});

test("guard() and createProxy() return servers with a typed 'denied' event", { timeout: 30_000, skip: needRoot() }, async (t) => {
  const server = guard(http.createServer(), new Policy().uid(0));
  const seen: Array<Decision | SecpolicyError> = [];
  // These lines compile only while the listener's parameters are typed (not any).
  server.on('denied', (reason, _socket) => {
    const typed: Equal<typeof reason, Decision | SecpolicyError> = true;
    const typedSocket: Equal<typeof _socket, net.Socket> = true;
    assert.ok(typed && typedSocket);
    seen.push(reason);
  });
  const path = await serve(t, server);
  await run(process.execPath, ['-e', `require('net').connect(${JSON.stringify(path)}).on('close', () => {}).on('error', () => {})`], {
    as: DAEMON,
  }).output();
  await new Promise<void>((resolve) => (seen.length ? resolve() : server.once('denied', () => resolve())));
  assert.equal((seen[0] as Decision).allowed, false);

  const tmp = tempDir('secpolicy-diag-');
  t.after(() => tmp.cleanup());
  const proxy = await createProxy({ listen: tmp.path('p.sock'), target: tmp.path('none.sock'), policy: new Policy().uid(0), mode: 0o666 });
  t.after(() => closeProxy(proxy, { grace: 0 }));
  proxy.once('denied', (_reason, _socket) => {
    const typed: Equal<typeof _reason, Decision | SecpolicyError> = true;
    const typedSocket: Equal<typeof _socket, net.Socket> = true;
    assert.ok(typed && typedSocket);
  });
});

const INDEX = new URL('../../src/index.js', import.meta.url).href;

/** A guarded HTTP server (or a proxy) in its own process with NODE_DEBUG=secpolicy; prints 'ready' once listening. */
const SERVER = `
const { Policy, guard, createProxy, listen } = await import(process.argv[1]);
const http = await import('node:http');
const [kind, path, target] = process.argv.slice(2);
const policy = new Policy().uid(0);
if (kind === 'proxy') await createProxy({ listen: path, target, policy, mode: 0o666 });
else await listen(guard(http.createServer((q, s) => s.end('ok')), policy), path, { mode: 0o666, allowInsecureDirectory: true });
console.log('ready');
process.stdin.on('end', () => process.exit(0)).resume();
`;

for (const kind of ['guard', 'proxy'] as const) {
  test(
    `NODE_DEBUG=secpolicy: one log line per denial (${kind})`,
    { timeout: 60_000, skip: needRoot() || needCommand('curl') },
    async (t) => {
      const tmp = tempDir('secpolicy-diag-');
      t.after(() => tmp.cleanup());
      const path = tmp.path('s.sock');
      const child = run(process.execPath, ['--input-type=module', '-e', SERVER, INDEX, kind, path, tmp.path('target.sock')], {
        env: { ...process.env, NODE_DEBUG: 'secpolicy' },
      });
      t.after(() => child.stdin!.end());
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (d: Buffer) => String(d).includes('ready') && resolve());
        child.once('close', () => child.output().then((o) => reject(new Error(o.stderr))));
      });
      await run('curl', ['-sS', '--max-time', '5', '--unix-socket', path, 'http://localhost/'], { as: DAEMON }).output();
      child.stdin!.end();
      const { stderr } = await child.output();
      const denials = stderr.split('\n').filter((line) => /denied/.test(line));
      assert.equal(denials.length, 1, stderr);
      assert.match(denials[0]!, /denied pid=\d+ uid=1 gid=1 result=0x4: /);
    },
  );
}

test("matching a gateway rule's who publishes nothing: 5 requests admitted by the third rule, 0 denials", async (t) => {
  const me = process.getuid!();
  const gw = await gatewayFixture(t, {
    version: 1,
    rules: [
      { name: 'first', who: { uid: me + 1 }, allow: ['* /**'] },
      { name: 'second', who: { not: { uid: me } }, allow: ['* /**'] },
      { name: 'third', who: { uid: me }, allow: ['GET /**'] },
    ],
  });
  const decisions: Decision[] = [];
  const denials: unknown[] = [];
  const onDecision = (m: unknown) => decisions.push(m as Decision);
  const onDenied = (m: unknown) => denials.push(m);
  subscribe(DECISION_CHANNEL, onDecision);
  subscribe(DENIED_CHANNEL, onDenied);
  t.after(() => {
    unsubscribe(DECISION_CHANNEL, onDecision);
    unsubscribe(DENIED_CHANNEL, onDenied);
  });
  for (let i = 0; i < 5; i++) {
    const answer = await new Promise<string>((resolve, reject) => {
      let out = '';
      const s = net.connect(gw.path, () => s.write('GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      s.on('data', (d) => (out += d));
      s.on('end', () => resolve(out));
      s.on('error', reject);
    });
    assert.match(answer, /^HTTP\/1\.1 200 /);
  }
  assert.equal(gw.up.received.length, 5);
  assert.deepEqual(
    decisions.filter((d) => !d.allowed).map((d) => d.failures.map((f) => f.message)),
    [],
    'who matching must not publish denied decisions',
  );
  assert.equal(denials.length, 0);
});
