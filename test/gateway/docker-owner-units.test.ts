/**
 * The pieces of owner scoping that need no daemon: the `filters` query rewritten the way
 * dockerd reads it (map of lists, legacy map of booleans, a client `label` filter
 * combined), and the owner label added to a checked body so that Go's decoder (which
 * merges a repeated map key into the map an earlier one filled) keeps the client's labels.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OWNER_LABEL, ownedEvent, ownedListing, scopedQuery, withOwnerLabel } from '../../src/gateway/docker-owner.js';

const filtersOf = (q: string): unknown => JSON.parse(new URLSearchParams(q.slice(1)).get('filters')!);
const mine = `${OWNER_LABEL}=uid:1`;

test('scopedQuery: the owner label joins the client filters in every form the daemon reads', () => {
  assert.deepEqual(filtersOf(scopedQuery('', 'uid:1') as string), { label: { [mine]: true } });
  const lists = scopedQuery(`?all=1&filters=${encodeURIComponent('{"label":["team=a"],"name":["x"]}')}`, 'uid:1') as string;
  assert.ok(lists.startsWith('?all=1&'));
  assert.deepEqual(filtersOf(lists), { label: { 'team=a': true, [mine]: true }, name: { x: true } });
  const legacy = scopedQuery(`?filters=${encodeURIComponent('{"label":{"team=a":true}}')}`, 'uid:1') as string;
  assert.deepEqual(filtersOf(legacy), { label: { 'team=a': true, [mine]: true } });
  // A client filter naming another owner stays: both must match, so nothing does.
  const forged = scopedQuery(`?filters=${encodeURIComponent(`{"label":["${OWNER_LABEL}=uid:2"]}`)}`, 'uid:1') as string;
  assert.deepEqual(filtersOf(forged), { label: { [`${OWNER_LABEL}=uid:2`]: true, [mine]: true } });
});

test('scopedQuery: filters the daemon could read otherwise than the gateway are refused', () => {
  for (const q of [
    '?filters=a&filters=b',
    '?filters=%7B',
    '?filters=%5B%5D',
    `?filters=${encodeURIComponent('{"label":"x"}')}`,
    `?filters=${encodeURIComponent('{"label":[1]}')}`,
    `?filters=${encodeURIComponent('{"label":{"x":"yes"}}')}`,
    '?a=1;filters=x',
    '?filters=%E0%A4%A',
  ]) {
    const r = scopedQuery(q, 'uid:1');
    assert.ok(typeof r !== 'string' && r.refuse.status === 400, q);
  }
});

test('withOwnerLabel: the label is the last key of the object, the bytes before it unchanged', () => {
  const body = Buffer.from('{"Image":"bb","Labels":{"a":"b"}}  \n');
  const out = withOwnerLabel(body, false, 'uid:1').toString();
  assert.equal(out, `{"Image":"bb","Labels":{"a":"b"},"Labels":{"${OWNER_LABEL}":"uid:1"}}  \n`);
  assert.equal(withOwnerLabel(Buffer.from(' { } '), true, 'uid:1').toString(), ` { "Labels":{"${OWNER_LABEL}":"uid:1"}} `);
  assert.equal(withOwnerLabel(Buffer.alloc(0), true, 'uid:1').toString(), `{"Labels":{"${OWNER_LABEL}":"uid:1"}}`);
});

test('answers: only the owner’s objects and events pass; what cannot be read passes nothing', () => {
  const list = JSON.stringify([
    { Id: 'a', Labels: { [OWNER_LABEL]: 'uid:1' } },
    { Id: 'b', Labels: { [OWNER_LABEL]: 'uid:2' } },
    { Id: 'c', Labels: null },
  ]);
  assert.deepEqual(JSON.parse(ownedListing('containers', list, 'uid:1')!), [{ Id: 'a', Labels: { [OWNER_LABEL]: 'uid:1' } }]);
  const vols = JSON.stringify({ Volumes: [{ Name: 'v', Labels: { [OWNER_LABEL]: 'uid:2' } }], Warnings: null });
  assert.deepEqual(JSON.parse(ownedListing('volumes', vols, 'uid:1')!), { Volumes: [], Warnings: null });
  assert.equal(ownedListing('containers', '{"not":"a list"}', 'uid:1'), undefined);
  assert.equal(ownedListing('networks', 'garbage', 'uid:1'), undefined);
  assert.ok(ownedEvent(JSON.stringify({ Actor: { Attributes: { [OWNER_LABEL]: 'uid:1' } } }), 'uid:1'));
  assert.ok(!ownedEvent(JSON.stringify({ Actor: { Attributes: { [OWNER_LABEL]: 'uid:2' } } }), 'uid:1'));
  assert.ok(!ownedEvent(JSON.stringify({ Type: 'volume', Actor: { Attributes: { driver: 'local' } } }), 'uid:1'));
  assert.ok(!ownedEvent('{', 'uid:1'));
});
