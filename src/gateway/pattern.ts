/**
 * Request patterns (`METHOD /path`) and host path patterns: `*` is one segment, `**` any
 * number of segments (none included). Literal segments of request patterns match without
 * regard to ASCII case, so that no spelling of a denied path slips past a deny pattern;
 * host path patterns are exact (file systems are case-sensitive).
 */

/** A compiled request pattern. */
export interface RequestPattern {
  /** As written in the policy. */
  source: string;
  /** An upper-case method, or `*` for any. */
  method: string;
  test(path: string): boolean;
}

const METHOD = /^(?:\*|[A-Z][A-Z-]*)$/;

/** Why a pattern is invalid, or undefined. */
export function requestPatternError(source: string): string | undefined {
  const space = source.indexOf(' ');
  if (space === -1) return 'must be "METHOD /path" (METHOD or *), such as "GET /containers/json"';
  const method = source.slice(0, space);
  if (!METHOD.test(method)) return `the method "${method}" must be upper case letters or *`;
  return pathPatternError(source.slice(space + 1));
}

/** Why a path pattern is invalid, or undefined. */
export function pathPatternError(path: string): string | undefined {
  if (!path.startsWith('/')) return `the path "${path}" must start with /`;
  if (path === '/') return undefined;
  for (const seg of path.slice(1).split('/')) {
    if (seg === '') return `the path "${path}" has an empty segment`;
    if (seg === '.' || seg === '..') return `the path "${path}" has a dot segment`;
    if (seg !== '*' && seg !== '**' && /[*%\\?#\s]/.test(seg))
      return `the segment "${seg}" of "${path}" must be *, ** or a literal without *, %, \\, ?, # or spaces`;
  }
  return undefined;
}

/**
 * Compiles `METHOD /path`. With `multiSegmentStar`, `*` matches one or more segments:
 * the Docker daemon's routes capture names with `{name:.*}`, so `/containers/a/b/json`
 * is the inspect route of a container named `a/b` (a link alias), and a one-segment `*`
 * would let such a path past a deny pattern.
 */
export function compileRequestPattern(source: string, multiSegmentStar: boolean): RequestPattern {
  const space = source.indexOf(' ');
  const method = source.slice(0, space);
  const re = pathRegExp(source.slice(space + 1), multiSegmentStar, true);
  return { source, method, test: (path) => re.test(path) };
}

/** A host path pattern as a test on a canonical absolute path. */
export function compileHostPattern(source: string): (path: string) => boolean {
  const re = pathRegExp(source, false, false);
  return (path) => re.test(path);
}

const ESCAPE = /[.*+?^${}()|[\]\\]/g;

function pathRegExp(path: string, multiSegmentStar: boolean, ignoreCase: boolean): RegExp {
  if (path === '/') return /^\/$/;
  let body = '';
  for (const seg of path.slice(1).split('/')) {
    if (seg === '**') body += '(?:/[^/]+)*';
    else if (seg === '*') body += multiSegmentStar ? '(?:/[^/]+)+' : '/[^/]+';
    else body += '/' + seg.replace(ESCAPE, '\\$&');
  }
  // `/**` also matches `/` itself.
  return new RegExp(path === '/**' ? `^(?:/|${body})$` : `^${body}$`, ignoreCase ? 'i' : '');
}
