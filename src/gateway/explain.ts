/**
 * What the gateway would answer a request from a given identity, without running it:
 * the same steps, in the same order, by the same functions as a live request: the
 * connect policy, then route() (request.ts: the target made canonical, the rules decided
 * by decide() on a connection record whose peer is the stated identity, and for a rule
 * with `docker:` limits the Docker profile's route: an unmodelled endpoint, query or body
 * framing refused), then the body bound and dockerCheck() (body.ts: the API version window,
 * the body model and limits, the effective state). Only what needs a live peer or the
 * daemon is stated or left out: the peer's attributes come from the identity (one not
 * stated is unknown, so a rule on it never matches, as for a live peer whose attribute
 * cannot be read). With a daemon socket (`to`) the daemon is asked what the gateway asks
 * it (container labels, the API version, the effective state); without one an unversioned
 * path is read as the newest API version the profile models, and the checks that read the
 * daemon are listed as not evaluated. A request is explained as a plain one (not an upgrade).
 */
import * as http from 'node:http';
import { invalidArg } from '../errors.js';
import type { Peer } from '../identity/index.js';
import { no, ok, absent, type Outcome } from '../identity/index.js';
import { groupName, primaryGidOf, statPath, userName } from '../native/index.js';
import { dockerCheck, tooLargeWhy } from './body.js';
import { newConn, type Gateway, type Verdict } from './context.js';
import { upstreamGet } from './docker-effective.js';
import { inspectContainer } from './containers.js';
import { DockerProfile } from './docker-request.js';
import { whoFailures, type ContainerInfo, type GatewayPolicy } from './policy.js';
import { route } from './request.js';

/** An identity to explain a request for: what `--as uid=N[,gid=N][,groups=N:N][,program=/path][,container=NAME]` states. */
export interface StatedIdentity {
  uid: number;
  /** The primary gid; by default the uid's passwd entry's. */
  gid?: number;
  /** Supplementary groups; unknown when not stated. */
  groups?: number[];
  /** The executable's path; unknown when not stated. */
  program?: string;
  /** The Docker name of the peer's container; on the host when not stated. */
  container?: string;
}

/** Parses `uid=N[,gid=N][,groups=N:N][,program=/path][,container=NAME]`. */
export function parseIdentity(text: string): StatedIdentity {
  const out: Partial<StatedIdentity> = {};
  const id = (key: string, v: string): number => {
    if (!/^\d{1,10}$/.test(v) || Number(v) > 0xfffffffe) throw invalidArg(`--as ${key}`, 'a numeric id', v);
    return Number(v);
  };
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    const key = eq === -1 ? part : part.slice(0, eq);
    const value = eq === -1 ? '' : part.slice(eq + 1);
    if (key in out) throw invalidArg('--as', `${key}= given once`, text);
    if (key === 'uid' || key === 'gid') out[key] = id(key, value);
    else if (key === 'groups') out.groups = value === '' ? [] : value.split(':').map((g) => id('groups', g));
    else if (key === 'program') {
      if (!value.startsWith('/')) throw invalidArg('--as program', 'an absolute path', value);
      out.program = value;
    } else if (key === 'container') {
      if (value === '') throw invalidArg('--as container', 'a container name', value);
      out.container = value.replace(/^\//, '');
    } else throw invalidArg('--as', 'uid=N[,gid=N][,groups=N:N][,program=/path][,container=NAME]', text);
  }
  if (out.uid === undefined) throw invalidArg('--as', 'uid=N[,gid=N][,groups=N:N][,program=/path][,container=NAME]', text);
  return out as StatedIdentity;
}

/**
 * A Peer made of stated attributes, for the policy evaluator: the attributes the identity
 * gives are what it reads; any other is unknown (a rule on it never matches).
 */
class StatedPeer {
  readonly side = 'server';
  readonly pid = 0;
  readonly uid: number;
  readonly gid: number;
  readonly #id: StatedIdentity;
  readonly #gidKnown: boolean;

  constructor(id: StatedIdentity, gid: number | undefined) {
    this.#id = id;
    this.uid = id.uid;
    this.gid = gid ?? 65534;
    this.#gidKnown = gid !== undefined;
  }

  get user(): string | undefined {
    return userName(this.uid);
  }
  get program(): string | undefined {
    return this.#id.program;
  }
  get seen(): Readonly<Record<string, unknown>> {
    return {};
  }
  hold(): void {}
  release(): void {}
  /** Values an evaluation brings with it (the gateway's container lookup), as a Peer keeps them. */
  readonly #given = new Map<string, Outcome<unknown>>();
  provide(name: string, value: Outcome<unknown>): void {
    this.#given.set(name, value);
  }
  has(name: string): boolean {
    return this.#given.has(name);
  }
  toJSON(): Record<string, unknown> {
    return { uid: this.uid, gid: this.gid, groups: this.#id.groups, program: this.#id.program, container: this.#id.container };
  }

  attempt(name: string): Outcome<unknown> {
    const id = this.#id;
    const given = this.#given.get(name);
    if (given !== undefined) return given;
    switch (name) {
      case 'uid':
        return ok(this.uid);
      case 'gid':
        return this.#gidKnown ? ok(this.gid) : no(`uid ${this.uid} has no passwd entry: state gid=`);
      case 'user': {
        const n = userName(this.uid);
        return n === undefined ? absent(`uid ${this.uid} has no user name`) : ok(n);
      }
      case 'group': {
        if (!this.#gidKnown) return no(`uid ${this.uid} has no passwd entry: state gid=`);
        const n = groupName(this.gid);
        return n === undefined ? absent(`gid ${this.gid} has no group name`) : ok(n);
      }
      case 'groups':
        return id.groups === undefined ? no('supplementary groups not stated (groups=N:N)') : ok(id.groups);
      case 'program':
        return id.program === undefined ? no('program not stated (program=/path)') : ok(id.program);
      case 'programStat': {
        if (id.program === undefined) return no('program not stated (program=/path)');
        const s = statPath(id.program);
        return s ? ok(s) : no(`cannot stat ${id.program}`);
      }
      case 'container':
        return ok(id.container === undefined ? null : { runtime: 'docker', id: `name:${id.container}` });
      default:
        return no(`${name} cannot be stated in --as: unknown`);
    }
  }
}

/** Options of {@link explainRequest}. */
export interface ExplainOptions {
  /** The request body (for an inspected Docker endpoint). */
  body?: Buffer;
  /** The upstream's socket: when given, container labels are looked up through it. */
  to?: string;
}

/** What {@link explainRequest} found. */
export interface Explanation {
  method: string;
  /** The target as sent. */
  target: string;
  /** The canonical path the rules saw (with `api: docker`, without its version prefix); null when the target was refused. */
  path: string | null;
  /** The rule that decided; null when none matched the identity. */
  rule: string | null;
  /** The pattern that decided, when one did. */
  pattern: string | null;
  /** What the rules (and the body check) decided. */
  allowed: boolean;
  /** The gateway's own answer (400, 403, 404, 413, 502), or null when it forwards the request. */
  status: number | null;
  /** Why, in order: the rules before the deciding one that did not match the identity, then the decision. */
  reasons: string[];
  /** Checks that need the live daemon or peer and were not made. */
  notEvaluated: string[];
  /** `refused` when the `connect` policy would refuse the identity's connection before any request (enforce mode). */
  connection: 'accepted' | 'refused';
  /** `enforce` or `audit` (audit forwards what the rules deny). */
  mode: 'enforce' | 'audit';
}

/** The decision the gateway running `policy` would make on `method target` from `identity`. */
export async function explainRequest(
  policy: GatewayPolicy,
  identity: StatedIdentity,
  method: string,
  target: string,
  options: ExplainOptions = {},
): Promise<Explanation> {
  const peer = new StatedPeer(identity, identity.gid ?? primaryGidOf(identity.uid)) as unknown as Peer;
  const notEvaluated: string[] = [];
  // What decide(), route() and dockerCheck() read of a gateway (the signing key is not needed to decide).
  const agent = options.to === undefined ? undefined : new http.Agent({ keepAlive: true });
  const get = agent && upstreamGet(agent, options.to!);
  const profile = policy.api !== 'docker' ? undefined : new DockerProfile(get);
  const gw = { policy, audit: policy.mode === 'audit', docker: policy.api === 'docker', profile, needsNames: false, cacheMs: 0 } as Gateway;
  try {
    let container: ContainerInfo | Error | undefined;
    if (identity.container !== undefined) {
      container = { name: identity.container, labels: {} };
      if (get !== undefined) {
        container = await inspectContainer(get, identity.container);
        // A daemon that gives no name: the name the identity stated.
        if (!(container instanceof Error) && container.name === '') container = { ...container, name: identity.container };
      } else if (policy.rules.some((r) => r.dockerNames)) notEvaluated.push('container labels (they are read from the daemon: give --to)');
    }
    return await steps(policy, gw, peer, container, method, target, options.body ?? Buffer.alloc(0), notEvaluated);
  } finally {
    agent?.destroy();
  }
}

/** explainRequest()'s steps, those of gateway.ts and request.ts, by their functions, in their order. */
async function steps(
  policy: GatewayPolicy,
  gw: Gateway,
  peer: Peer,
  container: ContainerInfo | Error | undefined,
  method: string,
  target: string,
  body: Buffer,
  notEvaluated: string[],
): Promise<Explanation> {
  const conn = newConn(gw, peer);
  conn.container = container;
  const out: Explanation = {
    method,
    target,
    path: null,
    rule: null,
    pattern: null,
    allowed: false,
    status: null,
    reasons: [],
    notEvaluated,
    connection: 'accepted',
    mode: policy.mode,
  };
  const audit = policy.mode === 'audit';
  // gateway.ts: the connect policy, once per connection, before any byte is read.
  if (policy.connect !== undefined) {
    const failures = whoFailures(policy.connect, peer, container);
    const why = typeof failures === 'string' ? failures : failures.length > 0 ? failures.map((f) => f.message).join('; ') : undefined;
    if (why !== undefined) {
      out.reasons.push(`connect policy: ${why}`);
      if (!audit) {
        out.connection = 'refused';
        return out;
      }
    }
  }
  const answer = (status: number): number | null => (audit ? null : status);
  // request.ts's handle(), by its functions, in its order.
  const r = route(conn, method, target, body.length > 0);
  if ('error' in r) {
    out.reasons.push(r.error);
    out.status = 400;
    return out;
  }
  const { m, verdict, docker } = r;
  out.path = m.path;
  whyNot(policy, peer, container, verdict, out.reasons);
  out.rule = verdict.rule?.name ?? null;
  out.pattern = verdict.pattern?.source ?? null;
  if (!verdict.allowed) {
    out.reasons.push(verdict.why);
    out.status = answer(403);
    return out;
  }
  out.reasons.push(`allowed by "${verdict.pattern!.source}"`);
  if (docker === undefined) {
    out.allowed = true;
    return out;
  }
  if (docker.refuse) {
    out.reasons.push(docker.refuse.why);
    out.status = answer(docker.refuse.status);
    return out;
  }
  // body.ts's inspect(): a body endpoint's body bounded, then checked; another's checked without it.
  if (docker.body && body.length > policy.maxBodyBytes) {
    out.reasons.push(tooLargeWhy(docker.label, policy.maxBodyBytes));
    out.status = answer(413);
    return out;
  }
  const checked = await dockerCheck(conn, docker, verdict, docker.body ? body : undefined, notEvaluated);
  const refusal = checked.refuse;
  if (refusal !== undefined) {
    out.reasons.push(refusal.why);
    out.status = answer(refusal.status);
    return out;
  }
  out.reasons.push(`${docker.label} passes the Docker profile${docker.body ? " (its body within the rule's docker limits)" : ''}`);
  if (checked.id !== undefined) out.reasons.push(`forwarded to ${checked.id}, the full Id the daemon's inspect named`);
  out.allowed = true;
  return out;
}

/** For each rule before the one that decided: why its `who` did not match the identity. */
function whyNot(
  policy: GatewayPolicy,
  peer: Peer,
  container: ContainerInfo | Error | undefined,
  verdict: Verdict,
  reasons: string[],
): void {
  for (const rule of policy.rules) {
    if (rule === verdict.rule) return;
    if (rule.who === undefined) continue;
    const failures = whoFailures(rule.who, peer, container);
    const why = typeof failures === 'string' ? failures : failures.map((f) => f.message).join('; ');
    reasons.push(`rule ${rule.name}: who does not match (${why})`);
  }
}
