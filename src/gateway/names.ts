/**
 * User and group names in a gateway policy that NSS does not know. Such a name would
 * never match (or, under `not`, always), so a policy that names one is refused when it is
 * loaded, with the field and line of the name.
 */
import { gidOf, uidOf } from '../native/index.js';
import { isMapping, type FieldPath, type Walk } from '../policy/index.js';

/** The keys of a `who` document whose values are user (`user`) or group names. */
const NAME_KEYS: Readonly<Record<string, 'user' | 'group'>> = { user: 'user', group: 'group', memberOf: 'group' };

/** Fails (through `walk`) at the first user or group name in `connect` or a rule's `who` that does not resolve. */
export function checkNames(doc: unknown, walk: Walk): void {
  if (!isMapping(doc)) return;
  if ('connect' in doc) whoNames(doc.connect, ['connect'], walk);
  if (!Array.isArray(doc.rules)) return;
  doc.rules.forEach((rule: unknown, i) => {
    if (isMapping(rule) && 'who' in rule) whoNames(rule.who, ['rules', i, 'who'], walk);
  });
}

function whoNames(value: unknown, at: FieldPath, walk: Walk): void {
  if (Array.isArray(value)) return value.forEach((item, i) => whoNames(item, [...at, i], walk));
  if (!isMapping(value)) return;
  for (const [key, field] of Object.entries(value)) {
    const here = [...at, key];
    if (key === 'anyOf' || key === 'allOf' || key === 'not') whoNames(field, here, walk);
    const kind = NAME_KEYS[key];
    if (kind === undefined) continue;
    const list = Array.isArray(field) ? field : [field];
    list.forEach((name, i) => {
      if (typeof name !== 'string') return;
      const known = kind === 'user' ? uidOf(name) : gidOf(name);
      if (known === undefined)
        walk.fail(
          Array.isArray(field) ? [...here, i] : here,
          `names the ${kind} "${name}", which this system does not know (NSS): it would never match. Create the ${kind} or fix the name`,
        );
    });
  }
}
