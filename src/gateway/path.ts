/**
 * The one canonical form of a request target (parser differentials, docs/security.md: decide on what the
 * upstream reads). Go's net/http, which the Docker daemon runs, percent-decodes the whole
 * path (`%2F` included) into URL.Path, and gorilla/mux routes on that decoded path after
 * cleaning dot segments and repeated slashes (an unclean path gets a redirect to the
 * clean one). The gateway decodes and cleans the same way, decides on the result, and
 * forwards that result (re-encoded where a character needs it) with the original query,
 * so the upstream routes on exactly the path the rules saw. What could be read two ways
 * is refused instead: an encoded `/` or `\`, an encoded dot segment, backslashes,
 * control characters and NUL, invalid percent sequences or UTF-8, fragments, and any
 * target that is not origin-form (`http://host/path`, `host:port`, `*`).
 */

/** A request target in canonical form. */
export interface CanonicalTarget {
  /** The decoded, cleaned path: `/` or `/a/b`, never a trailing slash, never `.`, `..` or empty segments. */
  path: string;
  /** The decoded path's segments (empty for `/`). */
  segments: string[];
  /** The path as forwarded: `path` with characters outside RFC 3986 pchar percent-encoded. */
  forward: string;
  /** The original query including its `?`, or the empty string. */
  query: string;
}

/** Why a target was refused (answered with 400). */
export interface TargetError {
  error: string;
}

const HEX = /^[0-9a-fA-F]{2}$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Canonicalises a request target as sent on the request line. Returns the canonical
 * target or, for anything ambiguous, the reason it is refused.
 */
export function canonicalTarget(raw: string): CanonicalTarget | TargetError {
  if (raw.length === 0 || raw.charCodeAt(0) !== 0x2f /* / */) {
    return { error: raw === '*' ? 'the target "*" is not served' : 'only origin-form request targets (/path) are accepted' };
  }
  const q = raw.indexOf('?');
  const rawPath = q === -1 ? raw : raw.slice(0, q);
  const query = q === -1 ? '' : raw.slice(q);
  // Go keeps a '#' in a request path as data; other servers drop what follows it.
  if (raw.includes('#')) return { error: 'a fragment (#) in the request target is ambiguous' };
  for (let i = 0; i < query.length; i++) {
    const c = query.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return { error: 'control or non-ASCII characters in the query' };
  }
  if (isPlain(rawPath)) {
    // Nothing to decode, clean or encode: the path is its own canonical form.
    return { path: rawPath, segments: rawPath.length === 1 ? [] : rawPath.slice(1).split('/'), forward: rawPath, query };
  }
  return general(rawPath, query);
}

/**
 * Whether a path is already canonical: only unreserved and sub-delim characters, `:`
 * and `@` (no `%`, so nothing decodes), no empty segment, no `.` or `..` segment.
 */
function isPlain(rawPath: string): boolean {
  if (rawPath === '/') return true;
  let start = 1;
  for (let i = 1; i <= rawPath.length; i++) {
    const c = i < rawPath.length ? rawPath.charCodeAt(i) : 0x2f;
    if (c === 0x2f) {
      const n = i - start;
      if (n === 0) return false;
      if (rawPath.charCodeAt(start) === 0x2e && (n === 1 || (n === 2 && rawPath.charCodeAt(start + 1) === 0x2e))) return false;
      start = i + 1;
    } else if (!PLAIN[c]) return false;
  }
  return true;
}

/** The characters of RFC 3986 pchar other than `%`, by code. */
const PLAIN = new Uint8Array(128);
for (const ch of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@") PLAIN[ch.charCodeAt(0)] = 1;

/** Decodes and cleans a path segment by segment (canonicalTarget for any path it does not take as already canonical). */
export function general(rawPath: string, query: string): CanonicalTarget | TargetError {
  const segments: string[] = [];
  let start = 1;
  for (let i = 1; i <= rawPath.length; i++) {
    if (i < rawPath.length && rawPath.charCodeAt(i) !== 0x2f) continue;
    const seg = decodeSegment(rawPath.slice(start, i));
    if (typeof seg !== 'string') return seg;
    start = i + 1;
    if (seg === '' || seg === '.') continue;
    if (seg === '..') segments.pop();
    else segments.push(seg);
  }
  if (segments.length === 0) return { path: '/', segments, forward: '/', query };
  const path = '/' + segments.join('/');
  return { path, segments, forward: needsEncoding(path) ? '/' + segments.map(encodeSegment).join('/') : path, query };
}

/** The target with its path made of other (decoded, clean, non-empty) segments, encoded where needed, and the same query. */
export function withSegments(t: CanonicalTarget, segments: string[]): CanonicalTarget {
  const path = '/' + segments.join('/');
  return { path, segments, forward: needsEncoding(path) ? '/' + segments.map(encodeSegment).join('/') : path, query: t.query };
}

/** One raw segment, decoded; an ambiguous one is refused. */
function decodeSegment(raw: string): string | TargetError {
  let encoded = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25 /* % */) encoded = true;
    else if (c === 0x5c) return { error: 'a backslash in the path is ambiguous' };
    else if (c <= 0x20 || c >= 0x7f) return { error: 'control, space or non-ASCII characters in the path' };
  }
  if (!encoded) return raw;
  const bytes: number[] = [];
  let dotOnly = true;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c !== 0x25) {
      bytes.push(c);
      if (c !== 0x2e) dotOnly = false;
      continue;
    }
    const hex = raw.slice(i + 1, i + 3);
    if (!HEX.test(hex)) return { error: 'an invalid percent-encoding in the path' };
    const b = Number.parseInt(hex, 16);
    if (b === 0x2f) return { error: 'an encoded slash (%2F) in the path is ambiguous' };
    if (b === 0x5c) return { error: 'an encoded backslash (%5C) in the path is ambiguous' };
    if (b < 0x20 || b === 0x7f) return { error: 'an encoded control character or NUL in the path' };
    if (b !== 0x2e) dotOnly = false;
    bytes.push(b);
    i += 2;
  }
  // `%2E%2E` is `..` to Go after decoding, and a name to servers that clean before decoding.
  if (dotOnly && (bytes.length === 1 || bytes.length === 2)) return { error: 'an encoded dot segment (%2E) in the path is ambiguous' };
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    return { error: 'the decoded path is not valid UTF-8' };
  }
}

/** RFC 3986 pchar minus '%': what a path segment may carry unencoded. */
const PCHAR = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/]*$/;

function needsEncoding(path: string): boolean {
  return !PCHAR.test(path);
}

function encodeSegment(segment: string): string {
  if (PCHAR.test(segment)) return segment;
  let out = '';
  for (const ch of segment) {
    if (PCHAR.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/** The Docker API's optional version prefix (`/v1.41`): the daemon's router reads `/v[0-9.]+` as one. */
const VERSION = /^v[0-9.]+$/;

/**
 * The path a Docker API rule matches: the canonical path without its leading `/v1.NN`
 * segments (only when more segments follow, as the daemon's router has it).
 */
export function dockerPath(target: CanonicalTarget): { path: string; segments: string[] } {
  // Every leading version segment goes: `/v1.41/v1.41/...` is a 404 to the daemon, and must
  // not be a way around a deny pattern for a server that reads it otherwise.
  let i = 0;
  while (i < target.segments.length - 1 && VERSION.test(target.segments[i]!)) i++;
  if (i === 0) return { path: target.path, segments: target.segments };
  const segments = target.segments.slice(i);
  return { path: '/' + segments.join('/'), segments };
}
