/**
 * The Peer's attribute getters are made from the registry at run time, so their types come
 * from a declaration-merged interface: every public attribute must be documented there (and
 * so in the published .d.ts), beginning with the registry's own `doc`, so that the two
 * cannot drift.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ATTRIBUTES, PUBLIC_ATTRIBUTES } from '../../src/identity/proc-attributes.js';

// The declarations tsc emitted next to the compiled module (dist/src/identity/peer.d.ts).
const declarations = readFileSync(new URL('../../src/identity/peer.d.ts', import.meta.url), 'utf8');

/** The JSDoc text right before the declaration of member `name` (a property or a getter), whitespace collapsed. */
function docOf(name: string): string | undefined {
  const m = new RegExp(`/\\*\\*((?:(?!\\*/)[\\s\\S])*)\\*/\\s*(?:readonly ${name}\\??:|get ${name}\\(\\))`).exec(declarations);
  return m?.[1]!
    .replace(/^\s*\*/gm, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

const upperFirst = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

test('every public attribute of the registry is a documented member of Peer in the published types', () => {
  assert.ok(PUBLIC_ATTRIBUTES.length > 15, 'the registry lists its public attributes');
  for (const name of PUBLIC_ATTRIBUTES) {
    const doc = docOf(name);
    assert.ok(doc, `Peer.${name} has no documentation in peer.d.ts`);
    const registry = ATTRIBUTES[name].doc;
    assert.ok(
      doc.includes(registry) || doc.includes(upperFirst(registry)),
      `the documentation of Peer.${name} does not carry the registry's doc\n  d.ts:     ${doc}\n  registry: ${registry}`,
    );
  }
});

test('a member without documentation is found missing', () => {
  // The finder itself: the pin accessor is documented, a name Peer does not declare is not.
  assert.ok(docOf('pinning'));
  assert.equal(docOf('noSuchAttribute'), undefined);
});
