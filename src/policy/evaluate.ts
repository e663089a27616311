/**
 * The one evaluator: every decision about a peer — apply(), applySync(), verified servers,
 * connect(), strict mode and the gateway's `who` — runs rules over a Peer through here.
 * It holds the peer (one pin for every /proc read), reads the asynchronous attributes the
 * compiled rules declare (the holder scan, the digest, a lookup the caller brings) before
 * the rules run, then runs them. It publishes nothing: only the application-facing
 * verifications (apply(), a verified server, connect()) turn failures into a published
 * Decision.
 */
import { ErrorCode, SecpolicyError } from '../errors.js';
import { no, type Outcome } from '../identity/index.js';
import type { Peer } from '../identity/index.js';
import { ATTRIBUTES, type AsyncAttributeName, type AttributeDef, type AttributeTypes, type Lookups } from '../identity/index.js';
import { runRules } from './combinators.js';
import { isThenable, needsOf, type Failure, type Rule, type RuleContext } from './rule.js';
import { readHolderDigests } from './strict.js';

/** What an evaluation runs with besides the rules and the peer. */
export interface EvaluationContext extends RuleContext {
  /**
   * `async` (apply()): the asynchronous attributes are read before the rules, off the event
   * loop where they can be; `sync` (applySync(), the gateway): each is read on the calling
   * thread when a rule asks for it.
   */
  mode: 'async' | 'sync';
  /** Readers for asynchronous attributes that live with the caller (the gateway's Docker lookup). */
  lookups?: Lookups;
  /** Values the caller already has for this evaluation (the gateway's resolved container). */
  given?: { readonly [K in AsyncAttributeName]?: Outcome<AttributeTypes[K]> };
}

/** Rules still being decided, with a way to let go of the peer's pin early (a timeout). */
export type Pending = Promise<Failure[]> & { release(): void };

/**
 * Runs `rules` over `peer`: the failures, synchronously when nothing needed waiting for;
 * else a promise of them. The peer is held (one pidfd) until the rules are done.
 */
export function evaluate(rules: readonly Rule[], peer: Peer, context: EvaluationContext): Failure[] | Pending {
  peer.hold();
  let pending: Failure[] | Promise<Failure[]>;
  // Made only for an evaluation that waits: a released one (a timeout) runs no rules after its reads.
  let state: { released: boolean } | undefined;
  try {
    const given = context.given;
    if (given !== undefined)
      for (const [name, value] of Object.entries(given)) peer.provide(name as AsyncAttributeName, value as Outcome<never>);
    const needs = context.mode === 'async' ? needsFor(rules, context.strict) : NONE;
    const wanted = needs.length === 0 ? needs : needs.filter((n) => !peer.has(n));
    if (wanted.length === 0) pending = runRules(rules, peer, context);
    else {
      const s = (state = { released: false });
      // A strict programDigest (of this policy, or of a strict policy nested in it) judges every
      // holder's executable: hashed off the loop too, once the holders are known.
      const holderDigests = wanted.includes('holders') && needs.includes('programDigest');
      pending = Promise.all(wanted.map((name) => preRead(peer, name, context.lookups)))
        .then(() => (holderDigests && !s.released ? readHolderDigests(peer.attempt('holders')) : undefined))
        .then(() => {
          // Let go before its reads ended (a timeout, an abort): the rules are not run, and
          // what the caller gets, should it still look, is a failure, never an empty list.
          if (s.released) throw new SecpolicyError(ErrorCode.ABORTED, 'the evaluation was let go before its reads ended');
          return runRules(rules, peer, context);
        });
    }
  } catch (error) {
    peer.release();
    throw error;
  }
  if (!isThenable(pending)) {
    peer.release();
    return pending;
  }
  const s = state ?? { released: false };
  const release = (): void => {
    if (!s.released) {
      s.released = true;
      peer.release();
    }
  };
  const settled = pending.then(
    (failures) => (release(), failures),
    (error: unknown) => {
      release();
      throw error;
    },
  );
  return Object.assign(settled, { release });
}

const NONE: readonly AsyncAttributeName[] = Object.freeze([]);
// A policy's rules are one array for its life (a snapshot's never change): their needs are worked out once.
const NEEDS = [
  new WeakMap<readonly Rule[], readonly AsyncAttributeName[]>(),
  new WeakMap<readonly Rule[], readonly AsyncAttributeName[]>(),
];

/** The asynchronous attributes `rules` read in an evaluation (strict or not). */
function needsFor(rules: readonly Rule[], strict: boolean): readonly AsyncAttributeName[] {
  const cache = NEEDS[strict ? 1 : 0]!;
  let needs = cache.get(rules);
  if (needs === undefined) cache.set(rules, (needs = Object.freeze([...(needsOf(rules, strict)?.always ?? [])])));
  return needs;
}

/** Reads one asynchronous attribute for the evaluation; a reader that throws makes it unknown. */
async function preRead(peer: Peer, name: AsyncAttributeName, lookups: Lookups | undefined): Promise<void> {
  const def = ATTRIBUTES[name] as AttributeDef<unknown>;
  let value: Outcome<unknown>;
  try {
    value = def.readAsync ? await def.readAsync(peer, lookups) : def.read(peer);
  } catch (e) {
    value = no(`cannot read ${name}: ${(e as Error).message}`);
  }
  peer.provide(name, value as Outcome<never>);
}
