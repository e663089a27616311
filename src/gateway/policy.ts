/**
 * Gateway policy documents: which peer may send which HTTP requests. A document is YAML
 * or JSON read with the policy-file reader (same file checks, same errors naming field
 * and line); `who` and `connect` are ordinary policy documents, built by the same schema
 * as policy files, plus (with `api: docker`) `container: { name, label }`, which is
 * resolved through the Docker API.
 */
import { dirname, isAbsolute, resolve } from 'node:path';

import { no, ok, type Outcome } from '../identity/index.js';
import type { Peer } from '../identity/index.js';
import type { DockerContainer } from '../identity/index.js';
import { allOf } from '../policy/index.js';
import { evaluate } from '../policy/index.js';
import { parseDocumentWith, readPolicyText } from '../policy/index.js';
import { Policy } from '../policy/index.js';
import { Result } from '../policy/index.js';
import { fail, missing, PASS, unknown, type Failure, type Rule } from '../policy/index.js';
import { isMapping, ruleOf, show, type FieldPath, type RuleExtensions, type Walk } from '../policy/index.js';
import * as v from '../validate.js';
import { DockerChecker, type DockerLimits } from './docker.js';
import { checkNames } from './names.js';
import { compileRequestPattern, pathPatternError, requestPatternError, type RequestPattern } from './pattern.js';

/** One rule of a gateway policy. */
export interface GatewayRule {
  /** Its `name`, or `rules[i]` when it has none. */
  readonly name: string;
  /** Who it is for; undefined matches every peer (`who: {}`). */
  readonly who: Policy | undefined;
  /** Whether `who` names containers by Docker name or label (resolved through the upstream). */
  readonly dockerNames: boolean;
  readonly allow: readonly RequestPattern[];
  readonly deny: readonly RequestPattern[];
  /** The rule's `docker:` limits, when it has some. */
  readonly docker: DockerChecker | undefined;
  readonly dockerLimits: Readonly<DockerLimits> | undefined;
}

/** What the gateway adds to forwarded requests. */
export interface ForwardOptions {
  /** Add the `X-Secpolicy-*` identity headers. */
  readonly identity: boolean;
  /** Sign them with HMAC-SHA256 using the key in this file. */
  readonly signKeyFile: string | undefined;
}

/** A parsed gateway policy document. */
export interface GatewayPolicy {
  readonly version: 1;
  /** `docker` for the Docker Engine API profile. */
  readonly api: 'docker' | undefined;
  /** `audit` forwards everything and logs what would have been denied. */
  readonly mode: 'enforce' | 'audit';
  /** Checked once per connection, before any HTTP. */
  readonly connect: Policy | undefined;
  readonly rules: readonly GatewayRule[];
  readonly forward: ForwardOptions;
  /** Largest request body read for inspection, in bytes (larger: 413). */
  readonly maxBodyBytes: number;
  /** Bounds on what one connection, and one uid, may hold. */
  readonly limits: GatewayLimits;
}

/** The `limits:` of a gateway policy: bounds on what a connection, and a uid, may hold. */
export interface GatewayLimits {
  /** Connections one uid may have open at once (more are answered 503 and closed); undefined: no cap. */
  readonly connectionsPerUid: number | undefined;
  /** Time to receive a request's head, in ms (then 408 and the connection closed). */
  readonly headersTimeoutMs: number;
  /** Time to receive a whole request, head and body, in ms (then 408 and the connection closed). */
  readonly requestTimeoutMs: number;
  /** How long a keep-alive connection may wait for its next request, in ms (then closed). */
  readonly idleTimeoutMs: number;
}

/** Defaults of {@link GatewayLimits}. */
export const DEFAULT_LIMITS: GatewayLimits = Object.freeze({
  connectionsPerUid: undefined,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 300_000,
  idleTimeoutMs: 30_000,
});

/** The largest time bound a policy may set: a day. */
const MAX_TIMEOUT = 86_400_000;

/** Default bound on an inspected body. */
export const DEFAULT_MAX_BODY = 1024 * 1024;

const brand = new WeakSet<object>();

/** True for a policy made by {@link parseGatewayPolicy} or {@link loadGatewayPolicy}. */
export function isGatewayPolicy(value: unknown): value is GatewayPolicy {
  return typeof value === 'object' && value !== null && brand.has(value);
}

/** Options of {@link parseGatewayPolicy}. */
export interface ParseGatewayPolicyOptions {
  /** Where the text came from: prefixed to messages; relative key files resolve against its directory. */
  source?: string;
  /**
   * Every user and group name (`user`, `group`, `memberOf`) must be known to NSS now: one that
   * is not fails like any other error in the document. loadGatewayPolicy() checks by default.
   * @default false
   */
  resolveNames?: boolean;
}

/** The `connect` document of each policy as JSON, to tell whether a reload changes it. */
export const connectSource = new WeakMap<GatewayPolicy, string>();

/**
 * Parses a gateway policy document (YAML or JSON text, or an object). Throws
 * ERR_SECPOLICY_POLICY_FILE naming the field and line of the first problem.
 */
export function parseGatewayPolicy(input: string | object, options?: ParseGatewayPolicyOptions): GatewayPolicy {
  if (options?.resolveNames === undefined) return parseDocumentWith(build, input, options);
  const { resolveNames, ...rest } = options;
  return parseDocumentWith(
    (doc, walk, source) => {
      const policy = build(doc, walk, source);
      if (resolveNames) checkNames(doc, walk);
      return policy;
    },
    input,
    rest,
  );
}

/**
 * Reads a gateway policy file with the policy-file checks and parses it; a user or group
 * name NSS does not know is an error unless `resolveNames` is false.
 */
export async function loadGatewayPolicy(file: string, options?: { resolveNames?: boolean }): Promise<GatewayPolicy> {
  return parseGatewayPolicy(await readPolicyText(file), { source: file, resolveNames: options?.resolveNames ?? true });
}

const TOP = ['version', 'api', 'mode', 'connect', 'rules', 'forward', 'maxBodyBytes', 'limits'];
const LIMITS = ['connectionsPerUid', 'headersTimeoutMs', 'requestTimeoutMs', 'idleTimeoutMs'];
const RULE = ['name', 'who', 'allow', 'deny', 'docker'];
const FORWARD = ['identity', 'signKeyFile'];
const DOCKER = ['privileged', 'hostNamespaces', 'capAdd', 'devices', 'binds', 'securityOpt', 'owner'];

function keysOf(value: unknown, path: FieldPath, walk: Walk, known: readonly string[], what: string): Record<string, unknown> {
  if (!isMapping(value)) walk.fail(path, `must be a mapping (${what}). Received ${show(value)}`);
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) walk.fail([...path, key], `unknown key "${key}" (known keys: ${known.join(', ')})`, true);
  }
  return value;
}

function build(doc: unknown, walk: Walk, source: string | undefined): GatewayPolicy {
  if (doc === null || doc === undefined) walk.fail([], 'the gateway policy is empty: write at least `rules:`');
  const d = keysOf(doc, [], walk, TOP, 'a gateway policy document');
  if ('version' in d && d.version !== 1) walk.fail(['version'], `must be 1. Received ${show(d.version)}`);
  if ('api' in d && d.api !== 'docker') walk.fail(['api'], `must be "docker" (the only API profile). Received ${show(d.api)}`);
  if ('mode' in d && d.mode !== 'enforce' && d.mode !== 'audit')
    walk.fail(['mode'], `must be "enforce" or "audit". Received ${show(d.mode)}`);
  const api = d.api === 'docker' ? 'docker' : undefined;
  const maxBodyBytes = d.maxBodyBytes ?? DEFAULT_MAX_BODY;
  if (typeof maxBodyBytes !== 'number' || !Number.isSafeInteger(maxBodyBytes) || maxBodyBytes < 1)
    walk.fail(['maxBodyBytes'], `must be a positive number of bytes. Received ${show(maxBodyBytes)}`);
  let connect: Policy | undefined;
  if ('connect' in d) {
    const rule = whoRule(d.connect, ['connect'], walk, api);
    if (rule === undefined) walk.fail(['connect'], 'must hold at least one rule (leave connect out to admit every peer)');
    connect = new Policy().rule(rule, 'connect');
  }
  if (!Array.isArray(d.rules)) walk.fail(['rules'], `must be a list of rules. Received ${show(d.rules)}`);
  const names = new Set<string>();
  const rules = d.rules.map((r, i) => {
    const rule = ruleOfDoc(r, ['rules', i], walk, api);
    if (names.has(rule.name)) walk.fail(['rules', i, 'name'], `repeats the rule name "${rule.name}"`);
    names.add(rule.name);
    return rule;
  });
  const forward = forwardOf(d.forward, walk, source);
  const limits = limitsOf(d.limits, walk);
  const policy: GatewayPolicy = Object.freeze({
    version: 1,
    api,
    mode: d.mode === 'audit' ? 'audit' : 'enforce',
    connect,
    rules: Object.freeze(rules),
    forward,
    maxBodyBytes,
    limits,
  });
  brand.add(policy);
  connectSource.set(policy, JSON.stringify(d.connect ?? null));
  return policy;
}

function limitsOf(value: unknown, walk: Walk): GatewayLimits {
  if (value === undefined) return DEFAULT_LIMITS;
  const l = keysOf(value, ['limits'], walk, LIMITS, 'such as { connectionsPerUid: 64 }');
  const bounded = (key: string, max: number, what: string): number | undefined => {
    if (!(key in l)) return undefined;
    const x = l[key];
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 1 || x > max)
      walk.fail(['limits', key], `must be ${what} from 1 to ${max}. Received ${show(x)}`);
    return x;
  };
  const ms = (key: keyof GatewayLimits): number => bounded(key, MAX_TIMEOUT, 'a whole number of ms') ?? (DEFAULT_LIMITS[key] as number);
  const headersTimeoutMs = ms('headersTimeoutMs');
  const requestTimeoutMs = ms('requestTimeoutMs');
  if (headersTimeoutMs > requestTimeoutMs)
    walk.fail(
      ['limits', 'headersTimeoutMs' in l ? 'headersTimeoutMs' : 'requestTimeoutMs'],
      `the head is part of the request: headersTimeoutMs (${headersTimeoutMs}) must not exceed requestTimeoutMs (${requestTimeoutMs})`,
    );
  return Object.freeze({
    connectionsPerUid: bounded('connectionsPerUid', 1_000_000, 'a whole number of connections'),
    headersTimeoutMs,
    requestTimeoutMs,
    idleTimeoutMs: ms('idleTimeoutMs'),
  });
}

function forwardOf(value: unknown, walk: Walk, source: string | undefined): ForwardOptions {
  if (value === undefined) return Object.freeze({ identity: false, signKeyFile: undefined });
  const f = keysOf(value, ['forward'], walk, FORWARD, 'such as { identity: true }');
  if ('identity' in f && typeof f.identity !== 'boolean')
    walk.fail(['forward', 'identity'], `must be true or false. Received ${show(f.identity)}`);
  let signKeyFile: string | undefined;
  if ('signKeyFile' in f) {
    if (!v.isName(f.signKeyFile)) walk.fail(['forward', 'signKeyFile'], `must be the path of a key file. Received ${show(f.signKeyFile)}`);
    if (f.identity !== true) walk.fail(['forward', 'signKeyFile'], 'signs the identity headers: set identity: true as well');
    signKeyFile = isAbsolute(f.signKeyFile)
      ? f.signKeyFile
      : source === undefined
        ? resolve(f.signKeyFile)
        : resolve(dirname(source), f.signKeyFile);
  }
  return Object.freeze({ identity: f.identity === true, signKeyFile });
}

function ruleOfDoc(value: unknown, at: FieldPath, walk: Walk, api: 'docker' | undefined): GatewayRule {
  const r = keysOf(value, at, walk, RULE, 'a rule: name, who, allow, deny, docker');
  const index = at[at.length - 1] as number;
  if ('name' in r && !(v.isName(r.name) && /^[\x21-\x7e]+(?: [\x21-\x7e]+)*$/.test(r.name)))
    walk.fail([...at, 'name'], `must be a non-empty printable name. Received ${show(r.name)}`);
  const name = typeof r.name === 'string' ? r.name : `rules[${index}]`;
  if (!('who' in r)) walk.fail(at, 'needs `who` (a policy document; {} matches every peer)');
  const usage = { dockerNames: false };
  const who = whoRule(r.who, [...at, 'who'], walk, api, usage);
  if (!('allow' in r)) walk.fail(at, 'needs `allow` (a list of "METHOD /path" patterns)');
  const allow = patterns(r.allow, [...at, 'allow'], walk, api);
  const deny = 'deny' in r ? patterns(r.deny, [...at, 'deny'], walk, api) : [];
  let limits: DockerLimits | undefined;
  if ('docker' in r) {
    if (api !== 'docker') walk.fail([...at, 'docker'], 'docker limits need `api: docker` at the top of the document', true);
    limits = dockerLimits(r.docker, [...at, 'docker'], walk);
  }
  return Object.freeze({
    name,
    who: who === undefined ? undefined : new Policy().rule(who, 'who'),
    dockerNames: usage.dockerNames,
    allow,
    deny,
    docker: limits && new DockerChecker(limits),
    dockerLimits: limits && Object.freeze(limits),
  });
}

function patterns(value: unknown, at: FieldPath, walk: Walk, api: 'docker' | undefined): RequestPattern[] {
  const items = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(items)) walk.fail(at, `must be a list of "METHOD /path" patterns. Received ${show(value)}`);
  return items.map((p, i) => {
    const where = typeof value === 'string' ? at : [...at, i];
    if (typeof p !== 'string') walk.fail(where, `must be a "METHOD /path" pattern. Received ${show(p)}`);
    const why = requestPatternError(p);
    if (why) walk.fail(where, why);
    return compileRequestPattern(p, api === 'docker');
  });
}

function dockerLimits(value: unknown, at: FieldPath, walk: Walk): DockerLimits {
  const d = keysOf(value, at, walk, DOCKER, 'docker limits: privileged, hostNamespaces, capAdd, devices, binds, securityOpt, owner');
  const bool = (key: string): boolean => {
    if (!(key in d)) return false;
    if (typeof d[key] !== 'boolean') walk.fail([...at, key], `must be true or false. Received ${show(d[key])}`);
    return d[key] as boolean;
  };
  const listOrTrue = (key: string, check: (s: string) => string | undefined): readonly string[] | true => {
    if (!(key in d)) return [];
    const x = d[key];
    if (x === true) return true;
    if (!Array.isArray(x)) walk.fail([...at, key], `must be a list (or true for any). Received ${show(x)}`);
    return x.map((item, i) => {
      if (typeof item !== 'string') walk.fail([...at, key, i], `must be a string. Received ${show(item)}`);
      const why = check(item);
      if (why) walk.fail([...at, key, i], why);
      return item;
    });
  };
  return {
    privileged: bool('privileged'),
    hostNamespaces: bool('hostNamespaces'),
    devices: bool('devices'),
    capAdd: listOrTrue('capAdd', (c) => (/^[A-Za-z_]+$/.test(c) ? undefined : `"${c}" is not a capability name such as NET_ADMIN`)),
    binds: listOrTrue('binds', (p) => pathPatternError(p)),
    securityOpt: securityOpt(d.securityOpt, [...at, 'securityOpt'], walk),
    ...('owner' in d && { owner: bool('owner') }),
  };
}

/** `securityOpt`: the exact `SecurityOpt` entries a rule allows besides no-new-privileges. */
function securityOpt(value: unknown, at: FieldPath, walk: Walk): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) walk.fail(at, `must be a list of security options. Received ${show(value)}`);
  return value.map((item, i) => {
    if (typeof item !== 'string' || item === '') walk.fail([...at, i], `must be a non-empty string. Received ${show(item)}`);
    if (/unconfined|\{|^disable$|^label[=:]/i.test(item))
      walk.fail([...at, i], `"${item}" removes confinement (unconfined, disable, a label change or an inline seccomp profile)`);
    return item;
  });
}

/**
 * A `who` (or `connect`) document as one rule, undefined for `{}`. The policy-file schema
 * builds it; the gateway's extension adds `container: { name, label }` (at any depth), a
 * rule over the Docker lookup attribute.
 */
function whoRule(value: unknown, at: FieldPath, walk: Walk, api: 'docker' | undefined, usage?: { dockerNames: boolean }): Rule | undefined {
  if (isMapping(value) && Object.keys(value).length === 0) return undefined;
  if (!isMapping(value) && !Array.isArray(value))
    walk.fail(at, `must be a policy document (a mapping such as { user: ci }; {} matches every peer). Received ${show(value)}`);
  return ruleOf(value, at, walk, dockerExtensions(api, usage));
}

/** The gateway's rule keys: `container` with `name` or `label` is looked up through the Docker API. */
function dockerExtensions(api: 'docker' | undefined, usage: { dockerNames: boolean } | undefined): RuleExtensions {
  return {
    container(field, here, walk) {
      if (!(isMapping(field) && ('name' in field || 'label' in field))) return undefined;
      if (api !== 'docker') walk.fail(here, 'container name and label are resolved through the Docker API: add `api: docker`', true);
      if (!usage) return walk.fail(here, 'container name and label cannot be used in connect (it is decided before any request)', true);
      usage.dockerNames = true;
      const { name, label, ...rest } = field;
      const byName = dockerNameRule(nameList(name, [...here, 'name'], walk), labels(label, [...here, 'label'], walk));
      if (Object.keys(rest).length === 0) return byName;
      // `{ name, runtime }`: the ordinary container rule for the rest, and both must hold.
      return allOf([ruleOf({ container: rest }, here.slice(0, -1), walk), byName]);
    },
  };
}

function nameList(value: unknown, at: FieldPath, walk: Walk): readonly string[] | undefined {
  if (value === undefined) return undefined;
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0 || !list.every((n) => v.isName(n)))
    walk.fail(at, `must be a container name or a list of names. Received ${show(value)}`);
  return list.map((n: string) => n.replace(/^\//, ''));
}

function labels(value: unknown, at: FieldPath, walk: Walk): Readonly<Record<string, string>> | undefined {
  if (value === undefined) return undefined;
  if (!isMapping(value) || Object.keys(value).length === 0)
    walk.fail(at, `must be a mapping of label names to values. Received ${show(value)}`);
  for (const [k, x] of Object.entries(value)) if (typeof x !== 'string') walk.fail([...at, k], `must be a string. Received ${show(x)}`);
  return Object.freeze({ ...(value as Record<string, string>) });
}

/** What the Docker API says about the peer's container. */
export type ContainerInfo = DockerContainer;

const readsContainerOf = new WeakMap<readonly Rule[], boolean>();

/** Whether some of `rules` reads the Docker container (a rule naming containers by Docker name or label). */
function readsContainer(rules: readonly Rule[]): boolean {
  let reads = readsContainerOf.get(rules);
  if (reads === undefined) {
    reads = rules.some((r) => r.needs?.always.includes('dockerContainer') === true || r.needs?.strict.includes('dockerContainer') === true);
    readsContainerOf.set(rules, reads);
  }
  return reads;
}

/** The container the gateway resolved, as the dockerContainer attribute. */
function containerOutcome(container: ContainerInfo | Error | undefined): Outcome<ContainerInfo> {
  if (container === undefined) return no('the container was not looked up');
  return container instanceof Error ? no(`container unresolved: ${container.message}`) : ok(container);
}

/**
 * Whether `peer` is who a rule's `who` (or the `connect` document) names: the one
 * evaluator, synchronously, with the container the gateway resolved (an Error when the
 * lookup failed, undefined when it was not looked up). Nothing is published: matching is
 * not a verification. Unknown never matches, whatever `not` or `anyOf` around it says.
 */
export function whoAdmits(who: Policy, peer: Peer, container: ContainerInfo | Error | undefined): boolean {
  const failures = whoFailures(who, peer, container);
  return typeof failures !== 'string' && failures.length === 0;
}

/**
 * The rules of a `who` (or `connect`) document that `peer` fails, through the one evaluator
 * and publishing nothing; a string when the document could not be evaluated at all (why).
 */
export function whoFailures(who: Policy, peer: Peer, container: ContainerInfo | Error | undefined): readonly Failure[] | string {
  // Given only to rules that read it: a value given is kept with the peer as what its rules saw.
  const rules = who.rules;
  let failures: ReturnType<typeof evaluate>;
  try {
    failures = readsContainer(rules)
      ? evaluate(rules, peer, { strict: who.strict, mode: 'sync', given: { dockerContainer: containerOutcome(container) } })
      : evaluate(rules, peer, { strict: who.strict, mode: 'sync' });
  } catch (error) {
    // A check that cannot run decides nothing: no match.
    return `unknown: ${(error as Error).message}`;
  }
  if (!Array.isArray(failures)) {
    // A who document holds no callbacks; should one ever answer later, it does not match.
    failures.release();
    failures.then(undefined, () => {});
    return 'unknown: a rule answered asynchronously';
  }
  return failures;
}

function dockerNameRule(names: readonly string[] | undefined, label: Readonly<Record<string, string>> | undefined): Rule {
  const expected = { ...(names && { name: names.length === 1 ? names[0] : names }), ...(label && { label }) };
  return {
    name: 'container',
    flag: Result.CONTAINER,
    expected,
    needs: { always: ['dockerContainer'], strict: [] },
    check(peer) {
      const c = peer.attempt('container');
      if (!c.ok) return missing(c, 'peer container');
      if (c.value === null) return fail(null, 'the peer does not run in a container');
      const info = peer.attempt('dockerContainer');
      if (!info.ok) return unknown(info.reason);
      if (names && !names.includes(info.value.name)) return fail(info.value.name, `the peer's container is named ${info.value.name}`);
      if (label) {
        for (const [k, x] of Object.entries(label)) {
          if (info.value.labels[k] !== x) return fail(info.value.labels, `the peer's container does not have label ${k}=${x}`);
        }
      }
      return PASS;
    },
  };
}
