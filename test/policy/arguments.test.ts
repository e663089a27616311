/** Every bad argument throws ERR_SECPOLICY_INVALID_ARG at call time, naming the argument. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { ErrorCode, Policy, isSecpolicyError } from '../../src/index.js';
import { connection } from '../helpers/connection.js';

function rejects(fn: () => unknown, argument: string) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isSecpolicyError(e), `not a SecpolicyError: ${String(e)}`);
    assert.equal(e.code, ErrorCode.INVALID_ARG);
    assert.equal((e as unknown as { argument: string }).argument, argument);
    assert.ok(e.message.includes(`"${argument}"`), e.message);
    return true;
  });
}

// Each rule method with values it must refuse, and the argument name the error must carry.
const bad: Array<[keyof Policy, unknown, string]> = [
  ...[-1, 1.5, NaN, Infinity, '1', null, undefined, 0xffffffff, 2 ** 32, 10n, {}].flatMap((x): Array<[keyof Policy, unknown, string]> => [
    ['uid', x, 'uid'],
    ['gid', x, 'gid'],
  ]),
  ['uid', [], 'uid'],
  ['uid', [1, -1], 'uid[1]'],
  ['gid', [0, '0'], 'gid[1]'],
  ...['', 'a\0b', 'x'.repeat(257), 1, null, [], {}].flatMap((x): Array<[keyof Policy, unknown, string]> => [
    ['user', x, 'user'],
    ['group', x, 'group'],
  ]),
  ['user', [''], 'user[0]'],
  ['user', ['root', 2], 'user[1]'],
  ['group', ['adm', ''], 'group[1]'],
  ...[-1, 0o1000, 1.5, '0600', null, undefined, NaN].map((x): [keyof Policy, unknown, string] => ['perms', x, 'perms']),
  ...['relative/path', '', '/bin/a\0b', 1, [], null].map((x): [keyof Policy, unknown, string] => ['program', x, 'program']),
  ['program', ['/usr/bin/socat', 'socat'], 'program[1]'],
  ...['fn', null, undefined, {}, 1].map((x): [keyof Policy, unknown, string] => ['callback', x, 'callback']),
  ...['', 1, null, ['a']].flatMap((x): Array<[keyof Policy, unknown, string]> => [
    ['creds', x, 'creds'],
    ['label', x, 'label'],
  ]),
  ...[-1, '', 1.5, [], {}, null].map((x): [keyof Policy, unknown, string] => ['memberOf', x, 'memberOf']),
  ['memberOf', ['adm', -4], 'memberOf[1]'],
];

test('rule methods refuse bad arguments, naming them', () => {
  for (const [method, value, argument] of bad) {
    rejects(() => (new Policy()[method] as (v: unknown) => unknown).call(new Policy(), value), argument);
  }
});

test('a refused argument leaves the policy as it was', () => {
  const p = new Policy().uid(1);
  assert.throws(() => p.uid(-1));
  assert.equal(p.rules[0]!.expected, 1);
});

test('constructor, combinators and rule() refuse bad arguments, naming them', () => {
  rejects(() => new Policy(5 as never), 'options');
  rejects(() => new Policy([] as never), 'options');
  rejects(() => new Policy({ strict: 'yes' } as never), 'options.strict');
  rejects(() => new Policy().allOf({} as never), 'allOf[0]');
  rejects(() => new Policy().anyOf(new Policy(), 'x' as never), 'anyOf[1]');
  rejects(() => new Policy().anyOf(), 'anyOf');
  rejects(() => new Policy().not(null as never), 'not');
  rejects(() => new Policy().rule({ name: 'x' } as never), 'rule');
});

test('apply() and applySync() refuse bad sockets and options, naming them', async (t) => {
  const c = await connection();
  t.after(() => c.close());
  for (const socket of [undefined, null, 'path', {}, 1]) {
    await assert.rejects(
      new Policy().apply(socket as never),
      (e: unknown) => isSecpolicyError(e) && e.code === ErrorCode.INVALID_ARG && /"socket"/.test(e.message),
    );
    rejects(() => new Policy().applySync(socket as never), 'socket');
  }
  const options: Array<[unknown, string]> = [
    [5, 'options'],
    [{ timeout: -1 }, 'options.timeout'],
    [{ timeout: 0 }, 'options.timeout'],
    [{ timeout: '1000' }, 'options.timeout'],
    [{ timeout: 2 ** 31 }, 'options.timeout'],
    [{ signal: {} }, 'options.signal'],
    [{ side: 'peer' }, 'options.side'],
    [{ socketPath: '' }, 'options.socketPath'],
  ];
  for (const [o, argument] of options) {
    await assert.rejects(
      new Policy().apply(c.socket, o as never),
      (e: unknown) => isSecpolicyError(e) && e.code === ErrorCode.INVALID_ARG && e.message.includes(`"${argument}"`),
      argument,
    );
  }
  rejects(() => new Policy().applySync(c.socket, { side: 'x' } as never), 'options.side');
  assert.ok(c.socket instanceof net.Socket);
});
