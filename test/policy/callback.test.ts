/** The callback rule: only `true` (sync or resolved) passes; false, other values, throws and rejections fail. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode, Peer, Policy, Result, isSecpolicyError } from '../../src/index.js';
import { connection } from '../helpers/connection.js';
import { needNative } from '../helpers/index.js';

test('callbacks returning true, false, other values, throwing, async and rejecting', async (t) => {
  const c = await connection();
  t.after(() => c.close());
  const apply = (fn: (peer: Peer) => boolean | Promise<boolean>) => new Policy().callback(fn).apply(c.socket);

  let seen: Peer | undefined;
  const pass = await apply((peer) => {
    seen = peer;
    return peer.uid === process.getuid!() && peer.pid === c.peer.pid;
  });
  assert.equal(pass.allowed, true);
  assert.equal(seen, pass.peer, "the callback gets the Decision's peer");

  const cases: Array<[string, (peer: Peer) => boolean | Promise<boolean>, RegExp, unknown]> = [
    ['false', () => false, /callback returned false/, false],
    ['a truthy non-boolean', () => 1 as unknown as boolean, /callback returned 1/, 1],
    [
      'a throw',
      () => {
        throw new Error('boom');
      },
      /callback threw: boom/,
      undefined,
    ],
    [
      'a non-Error throw',
      () => {
        throw 'plain';
      },
      /callback threw: plain/,
      undefined,
    ],
    ['async false', async () => false, /callback returned false/, false],
    [
      'a rejection',
      async () => {
        throw new Error('async boom');
      },
      /callback threw: async boom/,
      undefined,
    ],
    ['a promise of a non-boolean', async () => 'yes' as unknown as boolean, /callback returned yes/, 'yes'],
  ];
  for (const [what, fn, message, actual] of cases) {
    const d = await apply(fn);
    assert.equal(d.result, Result.CALLBACK, what);
    assert.equal(d.failures[0]!.rule, 'callback');
    assert.equal(d.failures[0]!.expected, true);
    assert.equal(d.failures[0]!.actual, actual, what);
    assert.match(d.failures[0]!.message, message, what);
  }

  assert.equal((await apply(async () => true)).allowed, true);
  assert.equal((await apply(() => new Promise((r) => setTimeout(() => r(true), 20)))).allowed, true);
});

test('applySync runs sync callbacks and refuses async ones with ERR_SECPOLICY_ASYNC_RULE', async (t) => {
  const c = await connection();
  t.after(() => c.close());
  assert.equal(new Policy().callback(() => true).applySync(c.socket).allowed, true);
  assert.equal(new Policy().callback(() => false).applySync(c.socket).result, Result.CALLBACK);
  assert.equal(
    new Policy()
      .uid(0)
      .callback(() => {
        throw new Error('x');
      })
      .applySync(c.socket).result,
    Result.CALLBACK | (process.getuid!() === 0 ? 0 : Result.UID),
  );
  for (const fn of [
    async () => true,
    async () => {
      throw new Error('never surfaces as unhandled');
    },
  ]) {
    assert.throws(
      () => new Policy().callback(fn).applySync(c.socket),
      (e: unknown) => isSecpolicyError(e) && e.code === ErrorCode.ASYNC_RULE,
    );
  }
});

test('a callback sees lazily resolved attributes of the peer', { skip: needNative('netlink') }, async (t) => {
  const c = await connection();
  t.after(() => c.close());
  const d = await new Policy()
    .callback((peer) => peer.socketPath === c.path && peer.program !== undefined && peer.perms === 0o777)
    .apply(c.socket);
  assert.equal(d.allowed, true);
});
