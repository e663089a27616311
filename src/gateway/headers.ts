/**
 * Headers across the gateway: what of a client's request reaches the upstream (no
 * hop-by-hop header, no client `X-Secpolicy-*` header, the identity headers added), and
 * what of the upstream's answer reaches the client.
 */
import type * as http from 'node:http';
import type { Conn, Verdict } from './context.js';
import { identityValues, ruleValue, sign, type IdentityValues } from './identity.js';
import type { GatewayRule } from './policy.js';

/** Hop-by-hop headers (RFC 9110 7.6.1) and those the gateway sets itself. */
const HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'expect',
]);

/** Hop-by-hop headers of a response. */
const RESPONSE_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** 1 at each length some name of `names` has: a header name of another length is none of them, whatever its case. */
function lengths(names: Iterable<string>): Uint8Array {
  const out = new Uint8Array(64);
  for (const n of names) out[n.length] = 1;
  return out;
}
/** The lengths of the request header names the gateway removes or looks at (Host). */
const REQUEST_NAME_LENGTHS = lengths([...HOP, 'host']);
const RESPONSE_HOP_LENGTHS = lengths(RESPONSE_HOP);

/** Whether a name that begins with this character could be an identity header (x, X, _ or -; see isIdentityHeader). */
function mayBeIdentity(c: number): boolean {
  return c === 0x78 || c === 0x58 || c === 0x5f || c === 0x2d;
}

/**
 * Header names a Connection header lists, lower case (removed before forwarding), or
 * undefined when it names none but the hop-by-hop `keep-alive` and `close`.
 */
function connectionListed(value: string | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  const v = value.toLowerCase();
  if (v === 'keep-alive' || v === 'close') return undefined;
  return new Set(v.split(',').map((s) => s.trim()));
}

/**
 * Whether a lower-case header name is one of the gateway's own under some spelling: CGI
 * and WSGI servers turn `-` into `_` (`X_Secpolicy_Uid` and `X-Secpolicy-Uid` are both
 * HTTP_X_SECPOLICY_UID to them), so the name is compared with every `-` and `_` left out.
 */
function isIdentityHeader(lower: string): boolean {
  if (lower.startsWith('x-secpolicy-')) return true;
  const c = lower.charCodeAt(0);
  // Only a name that begins with x or with a separator can be one.
  if (c !== 0x78 && c !== 0x5f && c !== 0x2d) return false;
  return lower.replace(/[-_]/g, '').startsWith('xsecpolicy');
}

/** What a connection's identity headers are, worked out at its first forwarded request. */
const kIdentity = Symbol('identity');
interface ConnIdentity {
  /** The peer's values (no rule): uid, gid, user, groups, pid, container. */
  peer: IdentityValues;
  /** The rule the headers below name, and the headers: names and values, as rawHeaders. */
  rule: GatewayRule | undefined;
  headers: string[];
}
type IdentityConn = Conn & { [kIdentity]?: ConnIdentity };

/** The identity headers (names and values) of the peer's values and a rule. */
function identityHeaders(values: IdentityValues): string[] {
  const out = ['X-Secpolicy-Uid', values.uid, 'X-Secpolicy-Gid', values.gid];
  if (values.user !== undefined) out.push('X-Secpolicy-User', values.user);
  out.push('X-Secpolicy-Groups', values.groups, 'X-Secpolicy-Pid', values.pid);
  if (values.container !== undefined) out.push('X-Secpolicy-Container', values.container);
  if (values.rule !== undefined) out.push('X-Secpolicy-Rule', values.rule);
  return out;
}

/**
 * The identity of a connection's peer: read once per connection, as its `who` matches are
 * (the peer cannot change on a connection), and its headers made once per rule that
 * allows its requests.
 */
function connIdentity(conn: Conn, rule: GatewayRule | undefined): ConnIdentity {
  let id = (conn as IdentityConn)[kIdentity];
  if (id === undefined) {
    const peer = identityValues(conn.peer, undefined);
    id = (conn as IdentityConn)[kIdentity] = { peer, rule, headers: identityHeaders(withRule(peer, rule)) };
  } else if (id.rule !== rule) {
    id.rule = rule;
    id.headers = identityHeaders(withRule(id.peer, rule));
  }
  return id;
}

/** A peer's identity values with the rule's name. */
function withRule(peer: IdentityValues, rule: GatewayRule | undefined): IdentityValues {
  return rule === undefined ? { ...peer } : { ...peer, rule: ruleValue(rule.name) };
}

/** The request headers to forward: hop-by-hop and client X-Secpolicy-* removed, identity added. */
export function forwardHeaders(
  req: http.IncomingMessage,
  conn: Conn,
  verdict: Verdict,
  method: string,
  forwardTarget: string,
  upgrade: boolean,
): string[] {
  const raw = req.rawHeaders;
  const out: string[] = [];
  const listed = connectionListed(req.headers.connection);
  let host = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    // Lower-cased only when it may be a name removed here (by its length or its first character) or Host.
    if (listed !== undefined || REQUEST_NAME_LENGTHS[name.length] === 1 || mayBeIdentity(name.charCodeAt(0))) {
      const lower = name.toLowerCase();
      if (HOP.has(lower) || isIdentityHeader(lower) || listed?.has(lower)) continue;
      if (lower === 'host') host = true;
    }
    out.push(name, raw[i + 1]!);
  }
  if (!host) out.push('Host', 'localhost');
  if (upgrade) out.push('Connection', 'Upgrade', 'Upgrade', req.headers.upgrade ?? 'tcp');
  const gw = conn.gw;
  if (gw.policy.forward.identity) {
    const id = connIdentity(conn, verdict.rule);
    const headers = id.headers;
    for (let i = 0; i < headers.length; i++) out.push(headers[i]!);
    if (gw.key !== undefined) {
      const values = withRule(id.peer, verdict.rule);
      const signature = sign(gw.key, method, forwardTarget, values);
      out.push('X-Secpolicy-Timestamp', values.timestamp!, 'X-Secpolicy-Nonce', values.nonce!, 'X-Secpolicy-Signature', signature);
    }
  }
  return out;
}

/** The upstream's response headers for the client, hop-by-hop ones removed. */
export function responseHeaders(raw: string[], closing: boolean): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (RESPONSE_HOP_LENGTHS[name.length] === 1 && RESPONSE_HOP.has(name.toLowerCase())) continue;
    out.push(name, raw[i + 1]!);
  }
  if (closing) out.push('Connection', 'close');
  return out;
}

/** Whether a message's raw headers have a Content-Length. */
export function hasContentLength(raw: string[]): boolean {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 14 && name.toLowerCase() === 'content-length') return true;
  }
  return false;
}
