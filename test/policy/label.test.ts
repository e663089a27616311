/**
 * creds()/label(): the SO_PEERSEC security label. This machine runs no LSM that labels
 * sockets, so the real path ends in ENOPROTOOPT ("no label") and the rule fails with that
 * reason. The matching logic is then tested against a MOCKED peer object (a stand-in that
 * answers `attempt('label')`), because no real peer here can carry an SELinux or AppArmor label.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Policy, Result, type Check, type Peer, type Rule } from '../../src/index.js';
import { peerSecurityLabel, socketFd } from '../../src/native/index.js';
import { DEFAULT_CONTEXT } from '../../src/policy/rule.js';
import { tableRule } from '../../src/policy/table.js';

const labelRule = (label: string): Rule => tableRule('creds', [label]);
import { connection } from '../helpers/connection.js';

test('without an LSM, SO_PEERSEC gives no label and creds/label rules fail with that reason', async (t) => {
  const c = await connection();
  t.after(() => c.close());
  const kernelLabel = peerSecurityLabel(socketFd(c.socket));
  if (kernelLabel !== undefined) {
    t.skip(`an LSM labels sockets here (${kernelLabel}); the no-label path cannot be exercised`);
    return;
  }
  for (const policy of [new Policy().creds('system_u:system_r:sshd_t:s0'), new Policy().label('unconfined')]) {
    const d = await policy.apply(c.socket);
    assert.equal(d.result, Result.CREDS);
    assert.equal(d.failures[0]!.actual, undefined);
    assert.match(d.failures[0]!.message, /no security label: no LSM provides SO_PEERSEC here/);
    assert.equal(d.peer.label, undefined);
  }
});

test('label() is an alias of creds(): same flag, and one replaces the other', () => {
  const p = new Policy().creds('a').label('b');
  assert.equal(p.rules.length, 1);
  assert.equal(p.rules[0]!.name, 'label');
  assert.equal(p.rules[0]!.expected, 'b');
  assert.equal(p.rules[0]!.flag, Result.CREDS);
  assert.equal(new Policy().label('b').creds('c').rules[0]!.name, 'creds');
});

/** A MOCKED peer: only what labelRule reads. No LSM labels sockets on this machine. */
function fakePeer(label: { ok: true; value: string } | { ok: false; reason: string }): Peer {
  return { attempt: (name: string) => (name === 'label' ? label : { ok: false, reason: `not mocked: ${name}` }) } as unknown as Peer;
}

const check = (rule: Rule, peer: Peer) => rule.check(peer, DEFAULT_CONTEXT) as Check;

test('label matching is exact (mocked peer labels)', () => {
  const context = 'system_u:system_r:sshd_t:s0';
  const rule = labelRule(context);
  assert.deepEqual(check(rule, fakePeer({ ok: true, value: context })), { pass: true });
  for (const other of [
    'system_u:system_r:sshd_t:s0:c0',
    'system_u:system_r:sshd_t',
    'SYSTEM_U:system_r:sshd_t:s0',
    `${context} `,
    'unconfined',
  ]) {
    const r = check(rule, fakePeer({ ok: true, value: other }));
    assert.equal(r.pass, false, other);
    assert.equal((r as { actual: unknown }).actual, other);
    assert.match((r as { message: string }).message, /is not system_u:system_r:sshd_t:s0/);
  }
  // No LSM labels the socket: known to have no label, so the rule fails (and not() of it passes).
  const none = check(rule, fakePeer({ ok: false, reason: 'no security label', absent: true } as never));
  assert.deepEqual(none, { pass: false, actual: undefined, message: 'peer label: no security label' });
  // A label that could not be read is unknown: the rule denies, and so does not() of it.
  const unreadable = check(rule, fakePeer({ ok: false, reason: 'getsockopt failed' }));
  assert.deepEqual(unreadable, { pass: false, actual: undefined, message: 'unknown: peer label: getsockopt failed', unknown: true });
  // AppArmor labels carry a mode suffix; the rule does not strip it.
  assert.equal(check(labelRule('/usr/bin/foo'), fakePeer({ ok: true, value: '/usr/bin/foo (enforce)' })).pass, false);
  assert.equal(check(labelRule('/usr/bin/foo (enforce)'), fakePeer({ ok: true, value: '/usr/bin/foo (enforce)' })).pass, true);
});
