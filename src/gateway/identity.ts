/**
 * Identity headers the gateway adds to forwarded requests, and their optional signature.
 *
 * Signature (version 1): HMAC-SHA256 with the key file's bytes over the lines
 *
 *     secpolicy-gateway-v1
 *     <method>
 *     <request target as forwarded: path and query>
 *     <X-Secpolicy-Uid> <X-Secpolicy-Gid> <X-Secpolicy-User> <X-Secpolicy-Groups>
 *     <X-Secpolicy-Pid> <X-Secpolicy-Container> <X-Secpolicy-Rule>
 *     <X-Secpolicy-Timestamp> <X-Secpolicy-Nonce>
 *
 * one value per line (an absent header is an empty line), joined with `\n`, no trailing
 * newline; sent as `X-Secpolicy-Signature: v1=<hex>`. The timestamp (Unix seconds) and
 * the random nonce let a verifier refuse old and replayed requests.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Container, Peer } from '../identity/index.js';

/** Header names, lower case (HTTP header names are case-insensitive). */
export const IDENTITY_HEADERS = Object.freeze({
  uid: 'x-secpolicy-uid',
  gid: 'x-secpolicy-gid',
  user: 'x-secpolicy-user',
  groups: 'x-secpolicy-groups',
  pid: 'x-secpolicy-pid',
  container: 'x-secpolicy-container',
  rule: 'x-secpolicy-rule',
  timestamp: 'x-secpolicy-timestamp',
  nonce: 'x-secpolicy-nonce',
  signature: 'x-secpolicy-signature',
});

/** The signed values, in signing order. */
const SIGNED = ['uid', 'gid', 'user', 'groups', 'pid', 'container', 'rule', 'timestamp', 'nonce'] as const;

/** The identity of a request's sender as headers carry it. */
export interface IdentityValues {
  uid: string;
  gid: string;
  user?: string;
  groups: string;
  pid: string;
  container?: string;
  rule?: string;
  timestamp?: string;
  nonce?: string;
}

/** A header-safe rendering of a name: printable ASCII as is, anything else percent-encoded. */
function headerSafe(value: string): string {
  return /^[\x21-\x7e]*$/.test(value) ? value : encodeURIComponent(value);
}

/** The `X-Secpolicy-Rule` value of a rule's name. */
export function ruleValue(name: string): string {
  return headerSafe(name);
}

/** X-Secpolicy-Container of a peer whose container cannot be read (an absent header means the host). */
export const UNKNOWN_CONTAINER = 'unknown';

/** The container each peer was found in, read once per peer (the log and the identity headers share it). */
const containers = new WeakMap<Peer, Container | null | undefined>();

/**
 * The peer's container (null on the host, undefined when it cannot be read), read from
 * /proc once per connection: the gateway decides `who` once per connection too, and the
 * log and the identity headers show the same container.
 */
export function peerContainer(peer: Peer): Container | null | undefined {
  let c = containers.get(peer);
  if (c === undefined && !containers.has(peer)) containers.set(peer, (c = peer.container));
  return c;
}

/** The identity header values for a peer and the rule that allowed its request. */
export function identityValues(peer: Peer, rule: string | undefined): IdentityValues {
  const c = peerContainer(peer);
  const user = peer.user;
  return {
    uid: String(peer.uid),
    gid: String(peer.gid),
    ...(user !== undefined && { user: headerSafe(user) }),
    groups: peer.groups.join(','),
    pid: String(peer.pid),
    // A container that cannot be read is said so: an absent header means the host.
    ...(c ? { container: headerSafe(`${c.runtime}:${c.id}`) } : c === undefined && { container: UNKNOWN_CONTAINER }),
    ...(rule !== undefined && { rule: headerSafe(rule) }),
  };
}

/** The string that is signed. */
export function signingString(method: string, target: string, values: IdentityValues): string {
  return ['secpolicy-gateway-v1', method, target, ...SIGNED.map((k) => values[k] ?? '')].join('\n');
}

/** Adds the timestamp, nonce and signature to identity values; returns the signature header value. */
export function sign(key: Uint8Array, method: string, target: string, values: IdentityValues, now = Date.now()): string {
  values.timestamp = String(Math.floor(now / 1000));
  values.nonce = randomBytes(16).toString('hex');
  return (
    'v1=' +
    createHmac('sha256', key)
      .update(signingString(method, target, values))
      .digest('hex')
  );
}

/** Options of {@link verifyIdentity}. */
export interface VerifyIdentityOptions {
  /** How old (or how far in the future) a timestamp may be, in seconds. @default 60 */
  maxAgeSeconds?: number;
  /**
   * Nonces already seen (kept at least `maxAgeSeconds`); a nonce in it is a replay.
   * The verifier adds each accepted nonce. Without it, replays within the window pass.
   */
  nonces?: Map<string, number>;
  /** The current time in ms. @default Date.now() */
  now?: number;
}

/** The outcome of {@link verifyIdentity}. */
export type VerifiedIdentity = { ok: true; identity: IdentityValues } | { ok: false; reason: string };

/**
 * For an upstream behind the gateway: checks the signature of a request's identity
 * headers with the gateway's key. `headers` is Node's `req.headers` (lower-case names);
 * `target` is `req.url` as received.
 */
export function verifyIdentity(
  key: Uint8Array,
  method: string,
  target: string,
  headers: Record<string, string | string[] | undefined>,
  options: VerifyIdentityOptions = {},
): VerifiedIdentity {
  const one = (name: string): string | undefined => {
    const h = headers[name];
    return Array.isArray(h) ? (h.length === 1 ? h[0] : undefined) : h;
  };
  const signature = one(IDENTITY_HEADERS.signature);
  if (!signature?.startsWith('v1=')) return { ok: false, reason: 'no v1 signature' };
  const values: Record<string, string | undefined> = {};
  for (const k of SIGNED) {
    const name = IDENTITY_HEADERS[k];
    if (Array.isArray(headers[name])) return { ok: false, reason: `${name} appears more than once` };
    values[k] = one(name);
  }
  const expected = createHmac('sha256', key)
    .update(signingString(method, target, values as unknown as IdentityValues))
    .digest();
  const given = Buffer.from(signature.slice(3), 'hex');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'bad signature' };
  const now = options.now ?? Date.now();
  const maxAge = options.maxAgeSeconds ?? 60;
  const ts = Number(values.timestamp);
  if (!Number.isSafeInteger(ts) || Math.abs(now / 1000 - ts) > maxAge) return { ok: false, reason: 'timestamp outside the allowed window' };
  if (options.nonces) {
    for (const [n, at] of options.nonces) if (at < now - maxAge * 2000) options.nonces.delete(n);
    if (options.nonces.has(values.nonce!)) return { ok: false, reason: 'replayed nonce' };
    options.nonces.set(values.nonce!, now);
  }
  return { ok: true, identity: values as unknown as IdentityValues };
}
