/**
 * The Policy builder: rule methods chain, calling one again replaces that rule, arrays
 * mean "any of". `apply()` verifies a connected UNIX socket and returns a Decision.
 */
import type { Socket } from 'node:net';
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
import { publishDecision } from '../diagnostics.js';
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import { Peer, type PeerOptions } from '../identity/index.js';
import { allOf, anyOf, not, record, withContext } from './combinators.js';
import { makeDecision, type Decision } from './decision.js';
import { evaluate, type Pending } from './evaluate.js';
import { Result } from './result.js';
import { TABLE_KEYS, tableRule, type TableRuleMethods } from './table.js';
import { PASS, isThenable, type Failure, type Rule, type RuleContext } from './rule.js';
import * as v from '../validate.js';

export type { Decision };

/** Options of `new Policy()`. */
export interface PolicyOptions {
  /**
   * Exec-after-connect defence: every process that holds the peer end of the socket must
   * pass the rules about what runs (program, programDigest, unit, container, noNewPrivs,
   * capabilities), not only the one that connected.
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

/**
 * The rule methods, one per rule of the rule table (src/policy/table.ts, listed in
 * docs/attributes.md). Each adds its rule, replacing an earlier one of the same name
 * (an alias, such as `label` for `creds`, names the same rule).
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type, @typescript-eslint/no-unsafe-declaration-merging
export interface Policy extends TableRuleMethods<Policy> {}

/** A set of rules a peer must satisfy. */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class Policy {
  readonly #rules = new Map<string, Rule>();
  readonly #extra: Rule[] = [];
  readonly #strict: boolean;
  #challenge: ChallengeConfig = {};
  #ordered: Rule[] | undefined;
  #frozen = false;

  constructor(options?: PolicyOptions) {
    const o = v.options<PolicyOptions>('options', options);
    if (o.strict !== undefined && typeof o.strict !== 'boolean') throw invalidArg('options.strict', 'a boolean', o.strict);
    this.#strict = o.strict ?? false;
  }

  /**
   * A frozen copy of this policy as it is now. createServer(), guard(), connect() and
   * createProxy() verify with one, so a rule added later never reaches a verifier already
   * installed; a rule method on the copy throws ERR_SECPOLICY_INVALID_ARG.
   */
  snapshot(): Policy {
    if (this.#frozen) return this;
    const copy = new Policy({ strict: this.#strict });
    for (const [key, rule] of this.#rules) copy.#rules.set(key, rule);
    copy.#extra.push(...this.#extra);
    copy.#challenge = { ...this.#challenge };
    copy.#ordered = [...this.rules];
    copy.#frozen = true;
    return copy;
  }

  /** True for a snapshot (see {@link Policy.snapshot}), whose rules cannot change. */
  get frozen(): boolean {
    return this.#frozen;
  }

  #change(): void {
    if (this.#frozen) throw invalidArg('policy', 'a policy that is not a frozen snapshot (change the original and install it again)', this);
    this.#ordered = undefined;
  }

  /** Whether the exec-after-connect defence is on. */
  get strict(): boolean {
    return this.#strict;
  }

  /** We send `await create()`; the peer answers; `await verify(challenge, response)` must be true. */
  challengeSend(create: ChallengeCreate, verify: ChallengeVerify): this {
    v.func('create', create);
    v.func('verify', verify);
    this.#change();
    this.#challenge = { ...this.#challenge, send: { create, verify }, secret: undefined };
    return this;
  }

  /** We answer the peer's challenge with `await solve(challenge)`. */
  challengeReceive(solve: ChallengeSolve): this {
    v.func('solve', solve);
    this.#change();
    this.#challenge = { ...this.#challenge, receive: solve, secret: undefined };
    return this;
  }

  /** Built-in mutual HMAC-SHA256 challenge with a shared secret (docs/challenge.md). */
  sharedSecret(secret: SharedSecret): this {
    const checked = validateSecret(secret);
    this.#change();
    this.#challenge = { secret: checked };
    return this;
  }

  /** Every one of these policies' rules must hold. */
  allOf(...policies: Policy[]): this {
    const rule = allOf(policies.map((p, i) => Policy.#asRule(p, `allOf[${i}]`)));
    this.#change();
    this.#extra.push(rule);
    return this;
  }

  /** At least one of these policies must hold. */
  anyOf(...policies: Policy[]): this {
    if (policies.length === 0) throw invalidArg('anyOf', 'at least one Policy', policies);
    const rule = anyOf(policies.map((p, i) => Policy.#asRule(p, `anyOf[${i}]`)));
    this.#change();
    this.#extra.push(rule);
    return this;
  }

  /** This policy must not hold. */
  not(policy: Policy): this {
    const rule = not(Policy.#asRule(policy, 'not'));
    this.#change();
    this.#extra.push(rule);
    return this;
  }

  /**
   * Adds a rule value (as made by the rule constructors or a policy file). A rule with the
   * same key replaces the previous one; `key` defaults to the rule's name.
   */
  rule(rule: Rule, key: string = rule.name): this {
    if (typeof rule !== 'object' || rule === null || typeof rule.check !== 'function') throw invalidArg('rule', 'a Rule', rule);
    this.#change();
    this.#rules.set(key, rule);
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
    const rule = rules.length === 1 ? rules[0]! : allOf(rules);
    // A strict policy stays strict inside anyOf / allOf / not, whatever the outer policy says.
    return policy.strict ? withContext(rule, STRICT) : rule;
  }

  /**
   * Verifies the peer of a connected UNIX stream socket. Rejects with a SecpolicyError only
   * when no verification is possible; a failed rule is a Decision with `allowed: false`.
   * `timeout` and `signal` bound the whole verification: a callback that never settles is
   * cut off (ERR_SECPOLICY_TIMEOUT / ERR_SECPOLICY_ABORTED) and its pin released.
   */
  async apply(socket: Socket, options?: ApplyOptions): Promise<Decision> {
    const o = v.options<ApplyOptions>('options', options);
    const timeout = v.timeout('options.timeout', o.timeout, DEFAULT_TIMEOUT);
    const signal = v.signal('options.signal', o.signal);
    const maxPayload = maxPayloadOption('options.maxPayload', o.maxPayload);
    const peer = peerFor(socket, o);
    // The asynchronous attributes (strict mode's holder scan, a digest) are read off the
    // event loop before the rules run, shared with concurrent verifications.
    const pending = evaluate(this.rules, peer, this.#strict ? ASYNC_STRICT : ASYNC);
    // An explicit timeout bounds callbacks too; the default bounds only the exchange.
    const bound = o.timeout === undefined ? undefined : timeout;
    const failures = isThenable(pending) ? await bounded(pending, bound, signal) : pending;
    // The exchange runs only for a peer that passed the identity rules: no secret work is
    // spent on a peer that is denied anyway.
    if (failures.length === 0 && this.hasChallenge) {
      const verified = await runChallenge(socket, this.#challenge, { role: peer.side, timeout, maxPayload, ...(signal && { signal }) });
      if (verified.ok === false) {
        failures.push(record(CHALLENGE_RULE, { pass: false, actual: verified.actual, message: verified.message }));
      }
    }
    return decisionOf(peer, failures);
  }

  /**
   * Synchronous apply(). Throws ERR_SECPOLICY_ASYNC_RULE if the policy has a challenge or
   * a callback returns a promise.
   */
  applySync(socket: Socket, options?: Omit<ApplyOptions, 'timeout' | 'signal'>): Decision {
    if (this.hasChallenge) {
      throw new SecpolicyError(ErrorCode.ASYNC_RULE, 'this policy has a challenge, which needs I/O: use apply()');
    }
    // A server's one frozen options object is taken as it is: nothing to copy per connection.
    const peer = peerFor(socket, options === SERVER_SIDE ? options : v.options<ApplyOptions>('options', options));
    const failures = evaluate(this.rules, peer, this.#strict ? SYNC_STRICT : SYNC);
    if (isThenable(failures)) {
      // The pin is released when the callback settles (evaluate); nobody waits for it.
      failures.then(undefined, () => {});
      throw new SecpolicyError(ErrorCode.ASYNC_RULE, 'a callback of this policy returned a promise: use apply()');
    }
    return decisionOf(peer, failures);
  }
}

const STRICT: RuleContext = Object.freeze({ strict: true });
const ASYNC_STRICT = Object.freeze({ strict: true, mode: 'async' as const });
const ASYNC = Object.freeze({ strict: false, mode: 'async' as const });
const SYNC_STRICT = Object.freeze({ strict: true, mode: 'sync' as const });
const SYNC = Object.freeze({ strict: false, mode: 'sync' as const });

/** @internal The options of a server's verification without a limiter: one frozen object, taken as it is. */
export const SERVER_SIDE: ApplyOptions = Object.freeze({ side: 'server' });
const SERVER_PEER: PeerOptions = Object.freeze({ side: 'server' });

/** The Peer an apply() checks (options already validated): the one the caller made, or a new one for these options. */
function peerFor(socket: Socket, o: Partial<ApplyOptions>): Peer {
  if (o === SERVER_SIDE) return new Peer(socket, SERVER_PEER);
  return (o as InternalApplyOptions)[knownPeer] ?? new Peer(socket, peerOptions(o));
}

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

const CHALLENGE_RULE: Rule = Object.freeze({ name: 'challenge', flag: Result.CHALLENGE, expected: 'a valid response', check: () => PASS });

/**
 * Waits for the rules, bounded by `timeout` and `signal`. When the bound ends first, the
 * pin is released at once (`onCut`): a callback that never settles keeps no pidfd.
 */
function bounded(pending: Pending, timeout: number | undefined, signal: AbortSignal | undefined): Promise<Failure[]> {
  if (timeout === undefined && signal === undefined) return pending;
  return new Promise<Failure[]>((resolve, reject) => {
    const cut = (error: SecpolicyError): void => {
      cleanup();
      pending.release();
      // The rules' own end, if it ever comes, has nobody to tell.
      pending.then(undefined, () => {});
      reject(error);
    };
    const onAbort = (): void => cut(new SecpolicyError(ErrorCode.ABORTED, 'verification aborted', { cause: signal?.reason }));
    const timer =
      timeout === undefined
        ? undefined
        : setTimeout(() => cut(new SecpolicyError(ErrorCode.TIMEOUT, `the rules were not decided within ${timeout} ms`)), timeout);
    const cleanup = (): void => {
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    pending.then(
      (failures) => (cleanup(), resolve(failures)),
      (error: unknown) => (cleanup(), reject(error)),
    );
  });
}

/** A policy's Decision, published on `secpolicy:decision` (and logged when denied). */
function decisionOf(peer: Peer, failures: Failure[]): Decision {
  const decision = makeDecision(peer, failures);
  publishDecision(decision);
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

// The table's builder methods, installed once on the prototype.
for (const [key, name] of TABLE_KEYS) {
  Object.defineProperty(Policy.prototype, key, {
    configurable: true,
    writable: true,
    value(this: Policy, ...args: unknown[]): Policy {
      return this.rule(tableRule(key, args), name);
    },
  });
}
