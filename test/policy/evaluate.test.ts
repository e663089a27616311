/**
 * The one evaluator: it runs rules over a Peer and publishes nothing (only apply(), a
 * verified server and connect() publish); the schema's extension hook adds a rule key at
 * any depth; the registry types what a rule's check gets.
 */
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { DECISION_CHANNEL, Peer, Policy, Result } from '../../src/index.js';
import { evaluate } from '../../src/policy/evaluate.js';
import { parseDocumentWith } from '../../src/policy/file.js';
import { PASS, fail, type Rule } from '../../src/policy/rule.js';
import { ruleOf, type Walk } from '../../src/policy/schema.js';
import { RULE_DEFS } from '../../src/policy/table.js';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

async function connected(t: { after: (fn: () => unknown) => void }) {
  const name = `\0secpolicy-evaluate-${process.pid}-${Math.random()}`;
  const server = net.createServer({ pauseOnConnect: true }).listen(name);
  await once(server, 'listening');
  const client = net.connect(name);
  const [socket] = (await once(server, 'connection')) as [net.Socket];
  t.after(() => (client.destroy(), socket.destroy(), server.close()));
  return socket;
}

test('evaluate() publishes nothing; apply() publishes its Decision', async (t) => {
  const socket = await connected(t);
  const seen: unknown[] = [];
  const onDecision = (m: unknown) => seen.push(m);
  subscribe(DECISION_CHANNEL, onDecision);
  t.after(() => unsubscribe(DECISION_CHANNEL, onDecision));
  const policy = new Policy().uid(process.getuid!() + 1);
  const failures = evaluate(policy.rules, new Peer(socket), { strict: false, mode: 'sync' });
  assert.ok(Array.isArray(failures));
  assert.equal(failures[0]!.flag, Result.UID);
  assert.equal(seen.length, 0, 'the evaluator itself publishes nothing');
  await policy.apply(socket);
  assert.equal(seen.length, 1);
});

test('a value the caller brings rides with one evaluation and is gone after it', async (t) => {
  const socket = await connected(t);
  const peer = new Peer(socket);
  const rule: Rule = {
    name: 'named',
    flag: Result.CONTAINER,
    expected: 'web',
    check: (p) => {
      const c = p.attempt('dockerContainer');
      return c.ok && c.value.name === 'web' ? PASS : fail(c.ok ? c.value.name : undefined, 'not web');
    },
  };
  const given = { dockerContainer: { ok: true as const, value: { name: 'web', labels: {} } } };
  assert.deepEqual(evaluate([rule], peer, { strict: false, mode: 'sync', given }), []);
  const after = evaluate([rule], peer, { strict: false, mode: 'sync' });
  assert.ok(Array.isArray(after) && after.length === 1, 'no side table keeps it for the next evaluation');
});

test('an asynchronous attribute the rules declare is read before they run, through the lookup the caller brings', async (t) => {
  const socket = await connected(t);
  const peer = new Peer(socket);
  const asked: number[] = [];
  const rule: Rule = {
    name: 'named',
    flag: Result.CONTAINER,
    expected: 'web',
    needs: { always: ['dockerContainer'], strict: [] },
    // A synchronous check: the value is there by the time it runs.
    check: (p) => {
      const c = p.attempt('dockerContainer');
      return c.ok && c.value.name === 'web' ? PASS : fail(c.ok ? c.value.name : undefined, c.ok ? 'not web' : c.reason);
    },
  };
  const lookups = {
    dockerContainer: async (p: { connection(): { pid: number } | undefined }) => {
      asked.push(p.connection()!.pid);
      return { ok: true as const, value: { name: 'web', labels: {} } };
    },
  };
  const pending = evaluate([rule], peer, { strict: false, mode: 'async', lookups });
  assert.ok(!Array.isArray(pending), 'the lookup is awaited');
  assert.deepEqual(await pending, []);
  assert.deepEqual(asked, [peer.pid]);
  // Without the lookup the attribute is unknown, and says so.
  const without = await evaluate([rule], peer, { strict: false, mode: 'async' });
  assert.match((without as { message: string }[])[0]!.message, /not looked up/);
});

test('the schema extension hook: a key of its own at any depth, the ordinary keys unchanged', () => {
  const marker: Rule = { name: 'marker', flag: 1, expected: true, check: () => PASS };
  const build = (doc: unknown, walk: Walk) => ruleOf(doc, [], walk, { marker: (v) => (v === true ? marker : undefined) });
  const rule = parseDocumentWith(build, 'anyOf:\n  - not: { marker: true }\n  - uid: 0\n');
  assert.deepEqual(rule.expected, [{ not: { marker: true } }, { uid: 0 }]);
  // Without the extension the key is unknown.
  assert.throws(() => parseDocumentWith((d, w) => ruleOf(d, [], w), 'marker: true\n'), { code: 'ERR_SECPOLICY_POLICY_FILE' });
});

test("a rule's check gets the value type the registry declares for its attribute", () => {
  const capabilities: Equal<Parameters<typeof RULE_DEFS.capabilities.check>[0], string[]> = true;
  const unit: Equal<Parameters<typeof RULE_DEFS.unit.check>[0], string | null> = true;
  const peer: Equal<Peer['capabilities'], string[] | undefined> = true;
  assert.ok(capabilities && unit && peer);
});
