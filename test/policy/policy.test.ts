/** The Policy builder: chaining, replacement, arrays, allOf/anyOf/not, Decision shape, Result values. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Policy, Result, resultNames } from '../../src/index.js';
import { connection } from '../helpers/connection.js';
import { needNative } from '../helpers/index.js';

const me = process.getuid!();
const myGid = process.getgid!();

test("Result holds the C library's SECPOLICY_RESULT_* values, frozen", () => {
  // From secpolicy/secpolicy.h.
  const c = { PERMS: 1, PROGRAM: 2, UID: 4, GID: 8, USER: 16, GROUP: 32, CALLBACK: 64, CHALLENGE: 128, CREDS: 256 };
  for (const [name, value] of Object.entries(c)) assert.equal(Result[name as keyof typeof Result], value, name);
  assert.equal(Result.MEMBER_OF, 512);
  assert.equal(Object.isFrozen(Result), true);
  const values = Object.values(Result);
  assert.equal(new Set(values).size, values.length, 'one bit per flag');
  for (const v of values) assert.equal(v & (v - 1), 0, `${v} is a single bit`);
  assert.deepEqual(resultNames(Result.UID | Result.PROGRAM), ['PROGRAM', 'UID']);
  assert.deepEqual(resultNames(0), []);
});

test('rule methods chain, a repeated rule replaces the earlier one, rules keep their order', () => {
  const p = new Policy();
  assert.equal(p.uid(1), p);
  assert.equal(
    p
      .gid(1)
      .user('a')
      .group('b')
      .perms(0o600)
      .program('/bin/sh')
      .memberOf('adm')
      .callback(() => true)
      .creds('x'),
    p,
  );
  assert.deepEqual(
    p.rules.map((r) => r.name),
    ['uid', 'gid', 'user', 'group', 'perms', 'program', 'memberOf', 'callback', 'creds'],
  );
  p.uid([2, 3]);
  assert.deepEqual(
    p.rules.map((r) => r.name),
    ['uid', 'gid', 'user', 'group', 'perms', 'program', 'memberOf', 'callback', 'creds'],
  );
  assert.deepEqual(p.rules[0]!.expected, [2, 3]);
  assert.equal(new Policy().perms(0o600).perms(0o660).rules[0]!.expected, 0o660);
});

test('replacing a rule changes the decision on a real connection', async (t) => {
  const c = await connection();
  t.after(() => c.close());
  const p = new Policy().uid(me + 1);
  assert.equal((await p.apply(c.socket)).result, Result.UID);
  p.uid(me);
  assert.equal((await p.apply(c.socket)).allowed, true);
  assert.equal((await new Policy().apply(c.socket)).allowed, true, 'an empty policy trusts every peer');
});

test('allOf, anyOf and not combine policies', async (t) => {
  const c = await connection();
  t.after(() => c.close());
  const yes = () => new Policy().uid(me);
  const no = () => new Policy().uid(me + 1);
  const noGid = () => new Policy().gid(myGid + 1);

  assert.equal((await new Policy().anyOf(no(), yes()).apply(c.socket)).allowed, true);
  const none = await new Policy().anyOf(no(), noGid()).apply(c.socket);
  assert.equal(none.result, Result.UID | Result.GID);
  assert.equal(none.failures.length, 1);
  assert.equal(none.failures[0]!.rule, 'anyOf');
  assert.deepEqual(none.failures[0]!.expected, [{ uid: me + 1 }, { gid: myGid + 1 }]);
  assert.match(none.failures[0]!.message, /none of the alternatives holds/);

  assert.equal((await new Policy().allOf(yes(), new Policy().gid(myGid)).apply(c.socket)).allowed, true);
  const some = await new Policy().allOf(yes(), no(), noGid()).apply(c.socket);
  assert.equal(some.result, Result.UID | Result.GID);

  assert.equal((await new Policy().not(no()).apply(c.socket)).allowed, true);
  const excluded = await new Policy().not(yes()).apply(c.socket);
  assert.equal(excluded.result, Result.UID);
  assert.deepEqual(excluded.failures[0]!.expected, { not: { uid: me } });
  assert.match(excluded.failures[0]!.message, /excluded/);

  // Nested, with an async member: apply() awaits it; applySync refuses it.
  const nested = new Policy().anyOf(
    no(),
    new Policy().allOf(
      yes(),
      new Policy().callback(async () => true),
    ),
  );
  assert.equal((await nested.apply(c.socket)).allowed, true);
  assert.equal(new Policy().anyOf(no(), yes()).applySync(c.socket).allowed, true);
  // A multi-rule policy inside anyOf must hold entirely.
  assert.equal((await new Policy().anyOf(new Policy().uid(me).gid(myGid + 1)).apply(c.socket)).result, Result.GID);
});

// perms(0o777) passes only where sock_diag proves the socket file (not under qemu-user).
const sd = { skip: needNative('netlink') };
test('the Decision: result = OR of failed flags, allowed, peer, one failure record per failed rule', sd, async (t) => {
  const c = await connection();
  t.after(() => c.close());
  const d = await new Policy()
    .uid(me)
    .gid(myGid + 7)
    .perms(0o777)
    .program('/usr/bin/socat')
    .callback(() => false)
    .apply(c.socket);
  assert.deepEqual(Object.keys(d).sort(), ['allowed', 'attributes', 'failures', 'peer', 'result']);
  assert.equal(d.result, Result.GID | Result.PROGRAM | Result.CALLBACK);
  assert.equal(d.allowed, false);
  assert.equal(d.peer.pid, c.peer.pid);
  assert.equal(d.failures.length, 3);
  for (const f of d.failures) {
    assert.deepEqual(Object.keys(f).sort(), ['actual', 'expected', 'flag', 'message', 'rule']);
    assert.equal(typeof f.message, 'string');
    assert.ok(f.message.length > 0);
  }
  assert.deepEqual(
    d.failures.map((f) => [f.rule, f.flag, f.expected]),
    [
      ['gid', Result.GID, myGid + 7],
      ['program', Result.PROGRAM, '/usr/bin/socat'],
      ['callback', Result.CALLBACK, true],
    ],
  );
  assert.deepEqual(JSON.parse(JSON.stringify(d)).peer.uid, me, 'a Decision serialises with its peer');
});
