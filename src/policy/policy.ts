/**
 * The Policy builder: rule methods chain, calling one again replaces that rule, arrays
 * mean "any of". `apply()` verifies a connected UNIX socket and returns a Decision.
 */
import { channel } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { debuglog } from 'node:util';
import {
  checkKeyLength,
  maxPayloadOption,
  runChallenge,
  type ChallengeConfig,
  type ChallengeCreate,
  type ChallengeSolve,
  type ChallengeVerify,
  type SharedSecret,
} from '../challenge/index.js';
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import { Peer, type PeerOptions } from '../identity/peer.js';
import { allOf, anyOfSync, not, record, runRules } from './combinators.js';
import { containerRule, hostRule, programDigestRule, sameNamespaceRule, type ContainerMatch } from './container-rules.js';
import type { NamespaceKind } from '../identity/namespaces.js';
import { Result } from './result.js';
import { isThenable, type Failure, type Rule, type RuleContext } from './rule.js';
import {
  callbackRule,
  gidRule,
  groupRule,
  labelRule,
  memberOfRule,
  permsRule,
  programRule,
  uidRule,
  userRule,
  type PeerCallback,
} from './rules.js';
import * as v from './validate.js';
import { prepareHolders } from './strict.js';

const log = debuglog('secpolicy');
const decisionChannel = channel('secpolicy:decision');

/** The outcome of applying a policy to a connection. */
export interface Decision {
  /** OR of the flags of every failed rule; 0 = trusted. */
  result: number;
  /** `result === 0`. */
  allowed: boolean;
  /** The peer that was verified. */
  peer: Peer;
  /** One record per failed rule: what was expected and what was found. */
  failures: Failure[];
}

/** Options of `new Policy()`. */
export interface PolicyOptions {
  /**
   * Exec-after-connect defence: every process that holds the peer end of the socket must
   * pass the program rule, not only the one that connected.
   * @default false
   */
  strict?: boolean;
}

/** Options of `apply()`. */
export interface ApplyOptions {
  /** Bound on any challenge exchange, in ms. @default 5000 */
  timeout?: number;
  /** Aborts a challenge exchange in progress. */
  signal?: AbortSignal;
  /** Which end of the connection we are (by default: `server` for accepted sockets). */
  side?: 'server' | 'client';
  /** The socket file the connection came through, when the caller knows it (connect() does). */
  socketPath?: string;
  /** Largest challenge payload accepted from the peer, in bytes (checked from the frame header). @default 65536 */
  maxPayload?: number;
}

/** @internal Carries a Peer already made for the socket (by a server's connection limiter). */
export const knownPeer = Symbol('secpolicy.knownPeer');

/** @internal Options only the package's own callers pass. */
export interface InternalApplyOptions {
  [knownPeer]?: Peer;
}

/** Default bound on a challenge exchange, in ms. */
export const DEFAULT_TIMEOUT = 5000;

/** A set of rules a peer must satisfy. */
export class Policy {
  readonly #rules = new Map<string, Rule>();
  readonly #extra: Rule[] = [];
  readonly #strict: boolean;
  #challenge: ChallengeConfig = {};
  #ordered: Rule[] | undefined;

  constructor(options?: PolicyOptions) {
    const o = v.options<PolicyOptions>('options', options);
    if (o.strict !== undefined && typeof o.strict !== 'boolean') throw invalidArg('options.strict', 'a boolean', o.strict);
    this.#strict = o.strict ?? false;
  }

  /** Whether the exec-after-connect defence is on. */
  get strict(): boolean {
    return this.#strict;
  }

  /** Mode bits (& 0o777) of the socket file the connection came through; never passes for abstract or unnamed sockets. */
  perms(mode: number): this {
    return this.rule(permsRule(mode));
  }

  /** The peer's executable is this file (compared by device and inode, not by path string). */
  program(path: string | string[]): this {
    return this.rule(programRule(path));
  }

  /** The SHA-256 (hex) of the peer's executable is one of these; hashed once per file version. */
  programDigest(sha256: string | string[]): this {
    return this.rule(programDigestRule(sha256));
  }

  /** The peer runs in a container: any (`true`, the default), or one matching `{ id, idPrefix, runtime }`. */
  container(match?: ContainerMatch): this {
    return this.rule(containerRule(match));
  }

  /** The peer runs on our host: it shares our pid and mount namespaces. */
  host(): this {
    return this.rule(hostRule());
  }

  /** The peer shares every one of these namespaces with us. */
  sameNamespace(kinds: NamespaceKind | NamespaceKind[]): this {
    return this.rule(sameNamespaceRule(kinds));
  }

  /** The peer's uid is one of these. */
  uid(id: number | number[]): this {
    return this.rule(uidRule(id));
  }

  /** The peer's primary gid is one of these. */
  gid(id: number | number[]): this {
    return this.rule(gidRule(id));
  }

  /** The name of the peer's uid is one of these. */
  user(name: string | string[]): this {
    return this.rule(userRule(name));
  }

  /** The name of the peer's primary gid is one of these. */
  group(name: string | string[]): this {
    return this.rule(groupRule(name));
  }

  /** The peer is in one of these groups, as primary or supplementary group (SO_PEERGROUPS). */
  memberOf(group: string | number | Array<string | number>): this {
    return this.rule(memberOfRule(group));
  }

  /** User code decides; anything but `true` (a throw, a rejection, a falsy value) fails. */
  callback(fn: PeerCallback): this {
    return this.rule(callbackRule(fn));
  }

  /** The peer's SO_PEERSEC security label is exactly this string. */
  creds(label: string): this {
    return this.rule(labelRule(label, 'creds'), 'creds');
  }

  /** Alias of {@link Policy.creds}. */
  label(label: string): this {
    return this.rule(labelRule(label, 'label'), 'creds');
  }

  /** We send `await create()`; the peer answers; `await verify(challenge, response)` must be true. */
  challengeSend(create: ChallengeCreate, verify: ChallengeVerify): this {
    v.func('create', create);
    v.func('verify', verify);
    this.#challenge = { ...this.#challenge, send: { create, verify }, secret: undefined };
    return this;
  }

  /** We answer the peer's challenge with `await solve(challenge)`. */
  challengeReceive(solve: ChallengeSolve): this {
    v.func('solve', solve);
    this.#challenge = { ...this.#challenge, receive: solve, secret: undefined };
    return this;
  }

  /** Built-in mutual HMAC-SHA256 challenge with a shared secret (PROTOCOL.md). */
  sharedSecret(secret: SharedSecret): this {
    this.#challenge = { secret: validateSecret(secret) };
    return this;
  }

  /** Every one of these policies' rules must hold. */
  allOf(...policies: Policy[]): this {
    this.#extra.push(allOf(policies.map((p, i) => Policy.#asRule(p, `allOf[${i}]`))));
    this.#ordered = undefined;
    return this;
  }

  /** At least one of these policies must hold. */
  anyOf(...policies: Policy[]): this {
    if (policies.length === 0) throw invalidArg('anyOf', 'at least one Policy', policies);
    this.#extra.push(anyOfSync(policies.map((p, i) => Policy.#asRule(p, `anyOf[${i}]`))));
    this.#ordered = undefined;
    return this;
  }

  /** This policy must not hold. */
  not(policy: Policy): this {
    this.#extra.push(not(Policy.#asRule(policy, 'not')));
    this.#ordered = undefined;
    return this;
  }

  /**
   * Adds a rule value (as made by the rule constructors or a policy file). A rule with the
   * same key replaces the previous one; `key` defaults to the rule's name.
   */
  rule(rule: Rule, key: string = rule.name): this {
    if (typeof rule !== 'object' || rule === null || typeof rule.check !== 'function') throw invalidArg('rule', 'a Rule', rule);
    this.#rules.set(key, rule);
    this.#ordered = undefined;
    return this;
  }

  /** The rules, in the order they run. */
  get rules(): readonly Rule[] {
    this.#ordered ??= [...this.#rules.values(), ...this.#extra];
    return this.#ordered;
  }

  /** True when the policy runs a challenge exchange (and so needs `apply()`). */
  get hasChallenge(): boolean {
    const c = this.#challenge;
    return c.send !== undefined || c.receive !== undefined || c.secret !== undefined;
  }

  /** The policy as one rule (its rules combined with allOf); challenges do not combine. */
  static #asRule(policy: Policy, where: string): Rule {
    if (!(policy instanceof Policy)) throw invalidArg(where, 'a Policy', policy);
    if (policy.hasChallenge) throw invalidArg(where, 'a Policy without a challenge (challenges cannot be nested)', policy);
    const rules = policy.rules;
    return rules.length === 1 ? rules[0]! : allOf(rules);
  }

  /**
   * Verifies the peer of a connected UNIX stream socket. Rejects with a SecpolicyError only
   * when no verification is possible; a failed rule is a Decision with `allowed: false`.
   */
  async apply(socket: Socket, options?: ApplyOptions): Promise<Decision> {
    const o = v.options<ApplyOptions>('options', options);
    const timeout = v.timeout('options.timeout', o.timeout, DEFAULT_TIMEOUT);
    const signal = v.signal('options.signal', o.signal);
    const maxPayload = maxPayloadOption('options.maxPayload', o.maxPayload);
    const peer = (o as InternalApplyOptions)[knownPeer] ?? new Peer(socket, peerOptions(o));
    // Strict mode: the holder scan runs off the event loop, shared with concurrent verifications.
    const holders = this.#strict ? await prepareHolders(peer) : undefined;
    // One pin serves every /proc read of the rules; it is released before the exchange.
    peer.hold();
    let failures: Failure[];
    try {
      const pending = runRules(this.rules, peer, this.#context());
      failures = isThenable(pending) ? await pending : pending;
    } finally {
      peer.release();
      holders?.release();
    }
    // The exchange runs only for a peer that passed the identity rules: no secret work is
    // spent on a peer that is denied anyway.
    if (failures.length === 0 && this.hasChallenge) {
      const verified = await runChallenge(socket, this.#challenge, { role: peer.side, timeout, maxPayload, ...(signal && { signal }) });
      if (verified.ok === false) {
        failures.push(
          record(
            { name: 'challenge', flag: Result.CHALLENGE, expected: 'a valid response', check: () => ({ pass: true }) },
            { pass: false, actual: verified.actual, message: verified.message },
          ),
        );
      }
    }
    return decide(peer, failures);
  }

  /**
   * Synchronous apply(). Throws ERR_SECPOLICY_ASYNC_RULE if the policy has a challenge or
   * a callback returns a promise.
   */
  applySync(socket: Socket, options?: Omit<ApplyOptions, 'timeout' | 'signal'>): Decision {
    if (this.hasChallenge) {
      throw new SecpolicyError(ErrorCode.ASYNC_RULE, 'this policy has a challenge, which needs I/O: use apply()');
    }
    const o = v.options<ApplyOptions>('options', options);
    const peer = (o as InternalApplyOptions)[knownPeer] ?? new Peer(socket, peerOptions(o));
    peer.hold();
    let failures: Failure[] | Promise<Failure[]>;
    try {
      failures = runRules(this.rules, peer, this.#context());
    } catch (error) {
      peer.release();
      throw error;
    }
    if (isThenable(failures)) {
      failures.then(
        () => peer.release(),
        () => peer.release(),
      );
      throw new SecpolicyError(ErrorCode.ASYNC_RULE, 'a callback of this policy returned a promise: use apply()');
    }
    peer.release();
    return decide(peer, failures);
  }

  #context(): RuleContext {
    return this.#strict ? STRICT : LOOSE;
  }
}

const STRICT: RuleContext = Object.freeze({ strict: true });
const LOOSE: RuleContext = Object.freeze({ strict: false });

function peerOptions(o: Partial<ApplyOptions>): PeerOptions {
  const out: PeerOptions = {};
  if (o.side !== undefined) {
    if (o.side !== 'server' && o.side !== 'client') throw invalidArg('options.side', '"server" or "client"', o.side);
    out.side = o.side;
  }
  if (o.socketPath !== undefined) {
    if (!v.isName(o.socketPath)) throw invalidArg('options.socketPath', 'a non-empty path', o.socketPath);
    out.socketPath = o.socketPath;
  }
  return out;
}

function decide(peer: Peer, failures: Failure[]): Decision {
  let result = 0;
  for (const f of failures) result |= f.flag;
  const decision: Decision = { result, allowed: result === 0, peer, failures };
  if (decisionChannel.hasSubscribers) decisionChannel.publish(decision);
  if (result !== 0)
    log('denied pid=%d uid=%d result=0x%s: %s', peer.pid, peer.uid, result.toString(16), failures.map((f) => f.message).join('; '));
  return decision;
}

function validateSecret(secret: unknown): SharedSecret {
  if (secret instanceof Uint8Array) {
    checkKeyLength(secret, 'sharedSecret()');
    return new Uint8Array(secret);
  }
  if (typeof secret === 'object' && secret !== null && typeof (secret as { keyFile?: unknown }).keyFile === 'string') {
    const keyFile = (secret as { keyFile: string }).keyFile;
    if (!v.isName(keyFile)) throw invalidArg('secret.keyFile', 'a non-empty path', keyFile);
    return { keyFile };
  }
  throw invalidArg('secret', 'a Uint8Array or { keyFile: string }', secret);
}
