/** The rule table: flags, file keys, docs and checks all come from one declaration. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Policy, Result, parsePolicy } from '../../src/index.js';
import { attributesDocTable } from '../../src/identity/proc-attributes.js';
import { RULE_DEFS, rulesDocTable } from '../../src/policy/table.js';
import { RULE_KEYS } from '../../src/policy/schema.js';

const docs = readFileSync(fileURLToPath(new URL('../../../docs/attributes.md', import.meta.url)), 'utf8');
const between = (name: string) =>
  docs.slice(docs.indexOf(`<!-- ${name}:begin -->\n`) + `<!-- ${name}:begin -->\n`.length, docs.indexOf(`\n<!-- ${name}:end -->`));

test('docs/attributes.md carries the tables generated from the declarations', () => {
  assert.equal(between('rules'), rulesDocTable());
  assert.equal(between('attributes'), attributesDocTable());
});

test('table flags: one bit each, distinct; the C library values kept; new rules on free bits; every table rule is a builder method and a file key', () => {
  // The C library's bits and the fixed flags of rules outside the table.
  const fixed: Record<string, number> = {
    PERMS: 1,
    PROGRAM: 2,
    UID: 4,
    GID: 8,
    USER: 16,
    GROUP: 32,
    CALLBACK: 64,
    CHALLENGE: 128,
    CREDS: 256,
  };
  Object.assign(fixed, { MEMBER_OF: 512, PROGRAM_DIGEST: 1024, CONTAINER: 2048, HOST: 4096, NAMESPACE: 8192, LIMIT: 16384 });
  const taken = new Set(Object.values(fixed));
  const table = new Set<number>();
  for (const [name, def] of Object.entries(RULE_DEFS)) {
    assert.equal(def.flag & (def.flag - 1), 0, `${name}: one bit`);
    assert.ok(!table.has(def.flag), `${name}: a bit of its own`);
    table.add(def.flag);
    if (Object.hasOwn(fixed, def.flagName)) assert.equal(def.flag, fixed[def.flagName], `${name} keeps its value`);
    else assert.ok(!taken.has(def.flag) && def.flag >= 32768, `${name}: a free bit`);
    assert.equal((Result as Record<string, number>)[def.flagName], def.flag);
    assert.equal(typeof (Policy.prototype as unknown as Record<string, unknown>)[name], 'function');
    assert.ok(Object.hasOwn(RULE_KEYS, name), `${name} is a policy-file key`);
  }
  for (const [k, value] of Object.entries(fixed)) assert.equal((Result as Record<string, number>)[k], value, k);
  assert.deepEqual(Object.keys(Result).slice(0, 6), ['PERMS', 'PROGRAM', 'UID', 'GID', 'USER', 'GROUP'], 'the C order');
});

test('table checks take plain values (no peer needed)', () => {
  const unit = RULE_DEFS.unit;
  const c = unit.compile(['nginx.service', 'sshd.service']);
  assert.equal(unit.check('nginx.service', c).pass, true);
  assert.equal(unit.check('cron.service', c).pass, false);
  assert.equal(unit.check(null, c).pass, false);
  const uu = RULE_DEFS.userUnit;
  const m = uu.compile({ uid: 1000, unit: 'app.service' });
  assert.equal(uu.check({ uid: 1000, unit: 'app.service' }, m).pass, true);
  assert.equal(uu.check({ uid: 1001, unit: 'app.service' }, m).pass, false);
  assert.equal(uu.check({ uid: 1000, unit: null }, m).pass, false);
  assert.equal(RULE_DEFS.noNewPrivs.check(false, true).pass, false);
});

test('table arguments are validated once, in the builder and in files alike', () => {
  assert.throws(() => new Policy().unit('nginx'), /ERR_SECPOLICY_INVALID_ARG|systemd unit name/);
  assert.throws(() => new Policy().slice('system'), /systemd slice name/);
  assert.throws(() => new Policy().userUnit({ uid: -1 } as never), /userUnit\.uid/);
  assert.throws(() => new Policy().userUnit({ uid: 1, units: 'x' } as never), /userUnit\.units/);
  assert.throws(
    () => parsePolicy('unit: nginx'),
    (e: Error & { code?: string }) => e.code === 'ERR_SECPOLICY_POLICY_FILE' && /^unit/.test(e.message),
  );
  assert.throws(() => parsePolicy('userUnit: { uid: 1000, unit: [a.service, 7] }'), /userUnit\.unit\[1\]/);
  assert.equal(new Policy().unit('a.service').unit('b.service').rules.length, 1, 'calling a rule again replaces it');
});
