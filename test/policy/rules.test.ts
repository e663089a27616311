/**
 * uid, gid, user, group and memberOf against peers that really run as other users
 * (setpriv), with the supplementary groups the kernel reports through SO_PEERGROUPS.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Policy, Result } from '../../src/index.js';
import { needCommand, needNative, needRoot } from '../helpers/index.js';
import { connection, DAEMON, NOBODY } from '../helpers/connection.js';

const skip = needRoot() || needCommand('setpriv');

test('uid, gid, user and group of a peer running as daemon', { skip }, async (t) => {
  const c = await connection({ as: DAEMON });
  t.after(() => c.close());

  const pass = await new Policy().uid(1).gid(1).user('daemon').group('daemon').apply(c.socket);
  assert.equal(pass.allowed, true);
  assert.equal(pass.result, 0);
  assert.deepEqual(pass.failures, []);

  const uid = await new Policy().uid(0).apply(c.socket);
  assert.equal(uid.result, Result.UID);
  assert.deepEqual(
    uid.failures.map(({ flag, rule, expected, actual }) => ({ flag, rule, expected, actual })),
    [{ flag: Result.UID, rule: 'uid', expected: 0, actual: 1 }],
  );
  assert.match(uid.failures[0]!.message, /peer uid 1 is not 0/);

  const gid = await new Policy().gid([0, 2, 65534]).apply(c.socket);
  assert.equal(gid.result, Result.GID);
  assert.deepEqual(gid.failures[0]!.expected, [0, 2, 65534]);
  assert.equal(gid.failures[0]!.actual, 1);
  assert.match(gid.failures[0]!.message, /one of 0, 2, 65534/);

  const user = await new Policy().user(['root', 'bin']).apply(c.socket);
  assert.equal(user.result, Result.USER);
  assert.equal(user.failures[0]!.actual, 'daemon');

  const group = await new Policy().group('nogroup').apply(c.socket);
  assert.equal(group.result, Result.GROUP);
  assert.equal(group.failures[0]!.actual, 'daemon');

  // Several failed rules: the result is the OR of their flags, one record each, in rule order.
  const all = await new Policy().uid(0).gid(0).user('root').group('root').apply(c.socket);
  assert.equal(all.result, Result.UID | Result.GID | Result.USER | Result.GROUP);
  assert.deepEqual(
    all.failures.map((f) => f.rule),
    ['uid', 'gid', 'user', 'group'],
  );
  assert.equal(all.allowed, false);
});

test('arrays mean any of, for ids and names', { skip }, async (t) => {
  const c = await connection({ as: NOBODY });
  t.after(() => c.close());
  const d = await new Policy().uid([0, 65534]).gid([1, 65534]).user(['daemon', 'nobody']).group(['adm', 'nogroup']).apply(c.socket);
  assert.equal(d.allowed, true, JSON.stringify(d.failures));
});

test('memberOf sees supplementary groups from SO_PEERGROUPS, by name and by gid', { skip: skip || needNative('peergroups') }, async (t) => {
  const c = await connection({ as: { ...NOBODY, groups: [4, 24] } });
  t.after(() => c.close());
  const groups: Array<string | number | Array<string | number>> = ['adm', 4, 'cdrom', 24, 65534, 'nogroup', ['sudo', 24]];
  for (const group of groups) {
    const d = await new Policy().memberOf(group).apply(c.socket);
    assert.equal(d.allowed, true, `memberOf(${JSON.stringify(group)}): ${JSON.stringify(d.failures)}`);
  }
  assert.deepEqual(
    (await new Policy().apply(c.socket)).peer.groups.sort((a, b) => a - b),
    [4, 24],
  );

  const denied = await new Policy().memberOf(['sudo', 27, 'daemon', 'no-such-group-secpolicy']).apply(c.socket);
  assert.equal(denied.result, Result.MEMBER_OF);
  assert.deepEqual(
    [...(denied.failures[0]!.actual as number[])].sort((a, b) => a - b),
    [4, 24, 65534],
  );
  assert.match(denied.failures[0]!.message, /not a member of one of sudo, 27, daemon, no-such-group-secpolicy/);
});

test('memberOf fails for a peer whose groups were cleared, and the group rule ignores supplementary groups', { skip }, async (t) => {
  const c = await connection({ as: DAEMON });
  t.after(() => c.close());
  const d = await new Policy().memberOf('adm').apply(c.socket);
  assert.equal(d.result, Result.MEMBER_OF);
  assert.deepEqual(d.failures[0]!.actual, [1]);
  assert.equal((await new Policy().memberOf('daemon').apply(c.socket)).allowed, true, 'the primary group counts');

  const withAdm = await connection({ as: { ...DAEMON, groups: [4] } });
  t.after(() => withAdm.close());
  assert.equal((await new Policy().group('adm').apply(withAdm.socket)).result, Result.GROUP);
  assert.equal((await new Policy().memberOf('adm').apply(withAdm.socket)).allowed, true);
});
