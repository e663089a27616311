/**
 * Text from the system (socket paths, program paths, process names, user names) printed
 * where a human reads it: anything that could move the cursor, start an escape sequence
 * or begin a new line is shown as `\xNN`, so a name cannot forge a line of output.
 */

// C0 and C1 controls, DEL, the backslash itself (so that the escaping is unambiguous),
// line and paragraph separators, bidirectional overrides and isolates, and lone surrogates.
const UNSAFE =
  // eslint-disable-next-line no-control-regex
  /[\x00-\x1f\x7f-\x9f\\\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * `text` with every control character and invisible direction mark shown as `\xNN` (or
 * `\uNNNN` above 0xff) and a backslash as `\\`. Printable text, including non-ASCII
 * letters, is unchanged.
 */
export function escapeText(text: string): string {
  return text.replace(UNSAFE, (c) => {
    if (c === '\\') return '\\\\';
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}
