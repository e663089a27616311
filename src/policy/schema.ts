/**
 * The policy-file schema: which keys a rule object may hold and how each becomes a Rule.
 * Values are checked by the same rule constructors (and so the same validators) as the
 * builder, so a file accepts exactly what the builder accepts and yields the same Rule
 * objects; this module only adds what files need on top: the path of each field, octal
 * strings for perms, and refusing what a file cannot express.
 */
import { describe, isSecpolicyError } from '../errors.js';
import { allOf, anyOf, not } from './combinators.js';
import type { Rule } from './rule.js';
import { RULE_DEFS, TABLE_KEYS, tableRule, type RuleDef } from './table.js';
import * as v from '../validate.js';

/** A field path inside the document: keys and list indexes. */
export type FieldPath = ReadonlyArray<string | number>;

/** A parsed value with its path, and a way to fail that points at it. */
export interface Walk {
  /** Throws ERR_SECPOLICY_POLICY_FILE naming the path (and line, when known). `key` points at the key, not the value. */
  fail(path: FieldPath, message: string, key?: boolean): never;
  /** The source text of a scalar at `path` (`"0660"` for the YAML number 0660), when known. */
  source(path: FieldPath): string | undefined;
}

/** Builds one rule from a key's value; `path` is where the value sits, for messages. */
type RuleMaker = (value: unknown, path: FieldPath, walk: Walk) => Rule;

/**
 * The extension hook of a document kind: rule keys of its own (the gateway's
 * `container: { name, label }`), tried before the policy-file keys at any depth. An
 * extension returns undefined to leave a value to the ordinary key of that name.
 */
export type RuleExtensions = Readonly<Record<string, (value: unknown, path: FieldPath, walk: Walk) => Rule | undefined>>;

/**
 * Rule keys of a rule object. Adding a builder rule to files is one line here; the key is
 * also the rule's slot in the Policy (a later key of the same slot would replace it, so
 * such pairs are refused in one object).
 */
export const RULE_KEYS: Readonly<Record<string, RuleMaker>> = Object.freeze(
  Object.assign(
    Object.create(null) as Record<string, RuleMaker>,
    // The rule table's keys: the file form and its validation come from each rule's declaration.
    Object.fromEntries(
      [...TABLE_KEYS].flatMap(([key, name]): Array<[string, RuleMaker]> => {
        const def = RULE_DEFS[name] as { file?: RuleDef<unknown[], unknown, unknown>['file']; notInFiles?: string };
        const { file, notInFiles } = def;
        // A rule that is code: its key is known, and refused with the reason.
        if (file === undefined) return [[key, (_value, path, walk) => walk.fail(path, notInFiles ?? 'not allowed in a policy file', true)]];
        const maker: RuleMaker = (value, path, walk) => {
          const r = file(value, (sub = []) => walk.source([...path, ...sub]));
          return r.ok ? tableRule(key, r.args) : walk.fail(path, `${r.message}. Received ${show(value)}`);
        };
        return [[key, maker]];
      }),
    ),
  ),
);

/** The Policy slot a rule key fills: an alias fills its rule's (at most one of them per object). */
function slotOf(key: string): string {
  return TABLE_KEYS.get(key) ?? key;
}

/** Keys of the builder that a file cannot hold, with the reason given to the user. */
const NOT_IN_FILES: Readonly<Record<string, string>> = {
  challengeSend: 'custom challenges are code: use sharedSecret: { keyFile } in a file, or Policy.challengeSend() in code',
  challengeReceive: 'custom challenges are code: use sharedSecret: { keyFile } in a file, or Policy.challengeReceive() in code',
};

/** Keys allowed only at the top of the document. */
const TOP_KEYS = Object.freeze(['version', 'strict', 'sharedSecret']);

const COMBINATORS = Object.freeze(['allOf', 'anyOf', 'not']);

/** The rule keys a file can hold a value for (not the code-only ones). */
const FILE_KEYS = [...TABLE_KEYS].filter(([, name]) => (RULE_DEFS[name] as { file?: unknown }).file !== undefined).map(([key]) => key);

/** Every key a file may hold, for "did you mean" hints. */
const ALL_KEYS = [...FILE_KEYS, ...COMBINATORS, ...TOP_KEYS];

/** True for a plain mapping (not a list, null, or a typed value such as `!!binary`). */
export const isMapping = v.isMapping;

/**
 * One rule object (or a list of them, meaning any of) as a single Rule: several keys in
 * one object must all hold.
 */
export function ruleOf(value: unknown, path: FieldPath, walk: Walk, extensions?: RuleExtensions): Rule {
  if (Array.isArray(value)) return anyOfList(value, path, walk, extensions);
  const rules = [...rulesOf(value, path, walk, false, extensions).values()];
  return rules.length === 1 ? rules[0]! : allOf(rules);
}

/**
 * The rules of a rule object, keyed by Policy slot, in document order. `top` admits the
 * top-level keys (which the caller handles).
 */
export function rulesOf(value: unknown, path: FieldPath, walk: Walk, top: boolean, extensions?: RuleExtensions): Map<string, Rule> {
  if (!isMapping(value)) {
    walk.fail(path, `must be a rule object (a mapping such as { uid: 0 }). Received ${show(value)}`);
  }
  const rules = new Map<string, Rule>();
  for (const [key, field] of Object.entries(value)) {
    const at = [...path, key];
    if (TOP_KEYS.includes(key)) {
      if (!top) walk.fail(at, `"${key}" is allowed only at the top of the document`, true);
      continue;
    }
    const slot = slotOf(key);
    if (rules.has(slot)) walk.fail(at, `"${key}" repeats a rule already given in this object (creds and label are the same rule)`, true);
    rules.set(slot, keyRule(key, field, at, walk, extensions));
  }
  if (rules.size === 0 && !(top && Object.hasOwn(value, 'sharedSecret'))) {
    walk.fail(path, 'must hold at least one rule: an empty policy would allow every peer');
  }
  return rules;
}

function keyRule(key: string, value: unknown, at: FieldPath, walk: Walk, extensions: RuleExtensions | undefined): Rule {
  if (key === 'allOf' || key === 'anyOf') {
    if (!Array.isArray(value)) walk.fail(at, `must be a list of rule objects. Received ${show(value)}`);
    if (key === 'anyOf') return anyOfList(value, at, walk, extensions);
    if (value.length === 0) walk.fail(at, 'must be a non-empty list of rule objects');
    return allOf(value.map((item, i) => ruleOf(item, [...at, i], walk, extensions)));
  }
  if (key === 'not') return not(ruleOf(value, at, walk, extensions));
  const extended = extensions !== undefined && Object.hasOwn(extensions, key) ? extensions[key]!(value, at, walk) : undefined;
  if (extended !== undefined) return extended;
  const make = RULE_KEYS[key];
  if (!make) {
    const why = Object.hasOwn(NOT_IN_FILES, key) ? NOT_IN_FILES[key] : undefined;
    walk.fail(at, why ?? `unknown key "${key}"${hint(key)}`, true);
  }
  try {
    return make(value, at, walk);
  } catch (e) {
    const argument = (e as { argument?: unknown }).argument;
    if (!isSecpolicyError(e) || typeof argument !== 'string') throw e;
    // The validators name the argument (`uid[1]`, `container.id`): point at that node.
    walk.fail([...at, ...argumentPath(argument, key)], e.message.replace(/^The ".*?" argument /, ''));
  }
}

/** `container.id[1]` named by a validator, relative to the key `container`: `['id', 1]`. */
function argumentPath(argument: string, key: string): FieldPath {
  if (!argument.startsWith(key)) return [];
  return [...argument.slice(key.length).matchAll(/\.([^.[\]]+)|\[(\d+)\]/g)].map((m) => (m[2] === undefined ? m[1]! : Number(m[2])));
}

function anyOfList(list: unknown[], at: FieldPath, walk: Walk, extensions?: RuleExtensions): Rule {
  if (list.length === 0) walk.fail(at, 'must be a non-empty list of rule objects');
  return anyOf(list.map((item, i) => ruleOf(item, [...at, i], walk, extensions)));
}

function hint(key: string): string {
  const near = ALL_KEYS.find((k) => k.toLowerCase() === key.toLowerCase().replace(/[-_]/g, ''));
  return near ? ` (did you mean "${near}"?)` : ` (rule keys: ${FILE_KEYS.join(', ')}, ${COMBINATORS.join(', ')})`;
}

/** A short rendering of a file value for messages. */
export function show(value: unknown): string {
  return isMapping(value) ? 'a mapping' : describe(value);
}
