/**
 * JSON read the way Go's encoding/json reads it into a struct, so that the gateway
 * checks the values the Docker daemon will act on (parser differentials, docs/security.md):
 *
 * - an object key names a struct field by exact name, else by Go's case folding (ASCII
 *   letters without regard to case, and each other rune folded to the smallest rune of
 *   its case orbit: the Kelvin sign K is `K`, the long s ſ is `S`);
 * - every key that names a field is decoded into that field in document order, so the
 *   last one wins for scalars and lists, while objects merge into the struct (or map) an
 *   earlier key filled, and a JSON null leaves a string or boolean as it was;
 * - strings decode `\u` escapes with surrogate pairs, and bytes that are not UTF-8 (and
 *   lone surrogates) become U+FFFD, one per bad byte, as Go's unquote does;
 * - a value of the wrong type for its field is an error (the daemon refuses such a body).
 *
 * Where Go's result depends on a slice's hidden capacity (a repeated list key whose
 * elements are null or objects, which Go decodes into the old backing array), the body is
 * refused as ambiguous rather than guessed at. Trailing data after the value is refused.
 *
 * Decoded strictly (`{ strict: true }`), a key that names no field of its struct is an
 * error naming it, where Go would skip it: a positive model knows every field it forwards.
 */

/** A parsed JSON value, keys kept in order with duplicates. */
export type JsonNode =
  | { t: 'obj'; entries: Array<[string, JsonNode]> }
  | { t: 'arr'; items: JsonNode[] }
  | { t: 'str'; v: string }
  | { t: 'num'; raw: string }
  | { t: 'bool'; v: boolean }
  | { t: 'null' };

/** A body that is not JSON as Go reads it, or does not fit the fields' types. */
export class GoJsonError extends Error {
  constructor(
    message: string,
    /**
     * 'syntax' for invalid JSON, 'type' for a value of the wrong type, 'ambiguous' for a result Go
     * leaves to memory layout, 'unknown' for a key no field has (strict decoding).
     */
    readonly kind: 'syntax' | 'type' | 'ambiguous' | 'unknown',
  ) {
    super(message);
  }
}

/** Go's decoder nests at most 10000 deep; far less is enough for any Docker body. */
const MAX_DEPTH = 512;

/** Parses one JSON value (whitespace around it allowed, nothing else). */
export function parseGoJson(bytes: Uint8Array): JsonNode {
  const p = new Parser(bytes);
  p.ws();
  const v = p.value(0);
  p.ws();
  if (p.i !== bytes.length) throw p.error('unexpected data after the JSON value');
  return v;
}

class Parser {
  i = 0;
  constructor(readonly b: Uint8Array) {}

  error(what: string): GoJsonError {
    return new GoJsonError(`invalid JSON at byte ${this.i}: ${what}`, 'syntax');
  }

  ws(): void {
    const b = this.b;
    while (this.i < b.length) {
      const c = b[this.i]!;
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      this.i++;
    }
  }

  value(depth: number): JsonNode {
    if (depth > MAX_DEPTH) throw this.error('nested too deeply');
    const c = this.b[this.i];
    switch (c) {
      case 0x7b /* { */:
        return this.object(depth);
      case 0x5b /* [ */:
        return this.array(depth);
      case 0x22 /* " */:
        return { t: 'str', v: this.string() };
      case 0x74 /* t */:
        this.literal('true');
        return { t: 'bool', v: true };
      case 0x66 /* f */:
        this.literal('false');
        return { t: 'bool', v: false };
      case 0x6e /* n */:
        this.literal('null');
        return { t: 'null' };
      default:
        if (c === 0x2d || (c !== undefined && c >= 0x30 && c <= 0x39)) return this.number();
        throw this.error(c === undefined ? 'unexpected end of input' : `unexpected character 0x${c.toString(16)}`);
    }
  }

  literal(word: string): void {
    for (let k = 0; k < word.length; k++) {
      if (this.b[this.i + k] !== word.charCodeAt(k)) throw this.error(`invalid literal (expected ${word})`);
    }
    this.i += word.length;
  }

  number(): JsonNode {
    const b = this.b;
    const start = this.i;
    const digit = (): boolean => this.i < b.length && b[this.i]! >= 0x30 && b[this.i]! <= 0x39;
    if (b[this.i] === 0x2d) this.i++;
    if (b[this.i] === 0x30) this.i++;
    else if (digit()) while (digit()) this.i++;
    else throw this.error('invalid number');
    if (b[this.i] === 0x2e) {
      this.i++;
      if (!digit()) throw this.error('invalid number');
      while (digit()) this.i++;
    }
    if (b[this.i] === 0x65 || b[this.i] === 0x45) {
      this.i++;
      if (b[this.i] === 0x2b || b[this.i] === 0x2d) this.i++;
      if (!digit()) throw this.error('invalid number');
      while (digit()) this.i++;
    }
    return { t: 'num', raw: Buffer.from(b.subarray(start, this.i)).toString('latin1') };
  }

  object(depth: number): JsonNode {
    this.i++;
    const entries: Array<[string, JsonNode]> = [];
    this.ws();
    if (this.b[this.i] === 0x7d) {
      this.i++;
      return { t: 'obj', entries };
    }
    for (;;) {
      this.ws();
      if (this.b[this.i] !== 0x22) throw this.error('expected a string key');
      const key = this.string();
      this.ws();
      if (this.b[this.i] !== 0x3a) throw this.error('expected :');
      this.i++;
      this.ws();
      entries.push([key, this.value(depth + 1)]);
      this.ws();
      const c = this.b[this.i];
      this.i++;
      if (c === 0x2c) continue;
      if (c === 0x7d) return { t: 'obj', entries };
      this.i--;
      throw this.error('expected , or }');
    }
  }

  array(depth: number): JsonNode {
    this.i++;
    const items: JsonNode[] = [];
    this.ws();
    if (this.b[this.i] === 0x5d) {
      this.i++;
      return { t: 'arr', items };
    }
    for (;;) {
      this.ws();
      items.push(this.value(depth + 1));
      this.ws();
      const c = this.b[this.i];
      this.i++;
      if (c === 0x2c) continue;
      if (c === 0x5d) return { t: 'arr', items };
      this.i--;
      throw this.error('expected , or ]');
    }
  }

  /** A string literal, decoded as Go's unquote decodes it. */
  string(): string {
    const b = this.b;
    this.i++;
    let out = '';
    let run = this.i;
    const flush = (end: number): void => {
      if (end > run) out += decodeUtf8Go(b, run, end);
    };
    for (;;) {
      if (this.i >= b.length) throw this.error('unterminated string');
      const c = b[this.i]!;
      if (c === 0x22) {
        flush(this.i);
        this.i++;
        return out;
      }
      if (c < 0x20) throw this.error('control character in string');
      if (c !== 0x5c) {
        this.i++;
        continue;
      }
      flush(this.i);
      const e = b[this.i + 1];
      switch (e) {
        case 0x22:
          out += '"';
          break;
        case 0x5c:
          out += '\\';
          break;
        case 0x2f:
          out += '/';
          break;
        case 0x62:
          out += '\b';
          break;
        case 0x66:
          out += '\f';
          break;
        case 0x6e:
          out += '\n';
          break;
        case 0x72:
          out += '\r';
          break;
        case 0x74:
          out += '\t';
          break;
        case 0x75: {
          const r = this.hex4(this.i + 2);
          if (r >= 0xd800 && r < 0xe000) {
            // Go: a surrogate followed by \u and a second one that completes a valid pair
            // is one rune; anything else is U+FFFD for the first and the rest read anew.
            const r2 = b[this.i + 6] === 0x5c && b[this.i + 7] === 0x75 ? this.hex4Maybe(this.i + 8) : -1;
            if (r < 0xdc00 && r2 >= 0xdc00 && r2 < 0xe000) {
              out += String.fromCodePoint(0x10000 + ((r - 0xd800) << 10) + (r2 - 0xdc00));
              this.i += 12;
              run = this.i;
              continue;
            }
            out += '\ufffd';
          } else {
            out += String.fromCharCode(r);
          }
          this.i += 6;
          run = this.i;
          continue;
        }
        default:
          this.i++;
          throw this.error('invalid escape in string');
      }
      this.i += 2;
      run = this.i;
    }
  }

  hex4(at: number): number {
    const r = this.hex4Maybe(at);
    if (r < 0) {
      this.i = at;
      throw this.error('invalid \\u escape');
    }
    return r;
  }

  hex4Maybe(at: number): number {
    let r = 0;
    for (let k = 0; k < 4; k++) {
      const c = this.b[at + k];
      if (c === undefined) return -1;
      const d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x41 && c <= 0x46 ? c - 0x37 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1;
      if (d < 0) return -1;
      r = r * 16 + d;
    }
    return r;
  }
}

/** UTF-8 as Go's utf8.DecodeRune reads it: each byte of a bad sequence is one U+FFFD. */
export function decodeUtf8Go(b: Uint8Array, start: number, end: number): string {
  let ascii = true;
  for (let k = start; k < end; k++) {
    if (b[k]! >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return Buffer.from(b.buffer, b.byteOffset + start, end - start).toString('latin1');
  let out = '';
  let k = start;
  while (k < end) {
    const c = b[k]!;
    if (c < 0x80) {
      out += String.fromCharCode(c);
      k++;
      continue;
    }
    let n = 0;
    let min = 0;
    let cp = 0;
    if (c >= 0xc2 && c <= 0xdf) [n, cp, min] = [1, c & 0x1f, 0x80];
    else if (c >= 0xe0 && c <= 0xef) [n, cp, min] = [2, c & 0x0f, 0x800];
    else if (c >= 0xf0 && c <= 0xf4) [n, cp, min] = [3, c & 0x07, 0x10000];
    let ok = n > 0 && k + n < end + 1;
    for (let j = 1; ok && j <= n; j++) {
      const d = b[k + j];
      if (d === undefined || k + j >= end || (d & 0xc0) !== 0x80) ok = false;
      else cp = (cp << 6) | (d & 0x3f);
    }
    if (ok && (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))) ok = false;
    if (!ok) {
      out += '\ufffd';
      k++;
      continue;
    }
    out += String.fromCodePoint(cp);
    k += n + 1;
  }
  return out;
}

/** Go's foldName for a key: ASCII letters upper-cased, K (U+212A) as K, ſ (U+017F) as S. */
export function foldName(key: string): string {
  let out = '';
  for (const ch of key) {
    const c = ch.codePointAt(0)!;
    if (c >= 0x61 && c <= 0x7a) out += String.fromCharCode(c - 0x20);
    else if (c === 0x212a) out += 'K';
    else if (c === 0x17f) out += 'S';
    else out += foldRune(ch);
  }
  return out;
}

/**
 * The smallest rune of a non-ASCII rune's case orbit, enough to keep distinct the keys
 * that Go keeps distinct (only K and ſ fold onto ASCII, handled above).
 */
function foldRune(ch: string): string {
  if (ch.charCodeAt(0) < 0x80) return ch;
  const single = (s: string): string | undefined => (s.length > 0 && [...s].length === 1 ? s : undefined);
  const lower = single(ch.toLowerCase()) ?? ch;
  const upper = single(ch.toUpperCase()) ?? ch;
  const candidates = [ch, lower, upper, single(lower.toUpperCase()) ?? lower, single(upper.toLowerCase()) ?? upper];
  // Never fold a non-ASCII rune onto ASCII here (Go's orbits keep İ and ı apart from I).
  return candidates.filter((x) => x.codePointAt(0)! >= 0x80).reduce((a, x) => (x.codePointAt(0)! < a.codePointAt(0)! ? x : a), ch);
}

/**
 * What a model says of a field: `safe` whatever its value; `check`, checked against a
 * rule's limits by the code that reads it; `refuse`, allowed only at its zero value (absent,
 * null, empty); `ignored`, a field of a later API version that the modelled daemon does not
 * decode (its type is still checked).
 */
export type Verdict = 'safe' | 'check' | 'refuse' | 'ignored';

/** The Go type a field is decoded into, and optionally what a model says of the field. */
export type GoType = (
  | { k: 'struct'; fields: Readonly<Record<string, GoType>>; folded?: Map<string, string> }
  | { k: 'ptr'; to: GoType & { k: 'struct' } }
  | { k: 'slice'; of: GoType }
  | { k: 'map'; of: GoType }
  | { k: 'string' }
  | { k: 'bool' }
  /** Any JSON number (Go's integer and float kinds; the daemon refuses one that does not fit). */
  | { k: 'number' }
  /** Docker's StrSlice: a list of strings or one string, replaced whole by its UnmarshalJSON. */
  | { k: 'strslice' }
) & { v?: Verdict; why?: string };

/** A decoded Go slice: its elements and the longest length its backing array has held. */
export class GoSlice<T = unknown> {
  constructor(
    public items: T[],
    public max: number,
  ) {}
}

/** A decoded struct: field name to value (an absent field is its zero value). */
export type GoStruct = Record<string, unknown>;

/** Constructors of the Go types a schema is written in. */
export const T = {
  string: { k: 'string' } as GoType,
  bool: { k: 'bool' } as GoType,
  number: { k: 'number' } as GoType,
  strslice: { k: 'strslice' } as GoType,
  struct: (fields: Record<string, GoType>): GoType & { k: 'struct' } => ({ k: 'struct', fields }),
  ptr: (to: GoType & { k: 'struct' }): GoType => ({ k: 'ptr', to }),
  slice: (of: GoType): GoType => ({ k: 'slice', of }),
  map: (of: GoType): GoType => ({ k: 'map', of }),
};

/** Options of {@link decodeGo}. */
export interface DecodeOptions {
  /** A key that names no field is an error (Go skips it). @default false */
  strict?: boolean;
}

/** Decodes a parsed body into a struct type, as json.Unmarshal into a zero value would. */
export function decodeGo(node: JsonNode, type: GoType & { k: 'struct' }, options: DecodeOptions = {}): GoStruct {
  const out = Object.create(null) as GoStruct;
  if (node.t === 'null') return out;
  if (node.t !== 'obj') throw typeError(node, 'an object', '');
  const previous = strict;
  strict = options.strict === true;
  try {
    decodeStruct(node, type, out, '');
  } finally {
    strict = previous;
  }
  return out;
}

/** Whether the decoding under way is strict (decoding is synchronous). */
let strict = false;

function typeError(node: JsonNode, expected: string, at: string): GoJsonError {
  const got = { obj: 'an object', arr: 'an array', str: 'a string', num: 'a number', bool: 'a boolean', null: 'null' }[node.t];
  return new GoJsonError(`${at || 'the body'}: cannot decode ${got} as ${expected}`, 'type');
}

function fieldOf(type: GoType & { k: 'struct' }, key: string): string | undefined {
  if (Object.hasOwn(type.fields, key)) return key;
  if (!type.folded) {
    type.folded = new Map();
    for (const name of Object.keys(type.fields)) if (!type.folded.has(foldName(name))) type.folded.set(foldName(name), name);
  }
  return type.folded.get(foldName(key));
}

function decodeStruct(node: JsonNode & { t: 'obj' }, type: GoType & { k: 'struct' }, out: GoStruct, at: string): void {
  for (const [key, value] of node.entries) {
    const name = fieldOf(type, key);
    if (name === undefined) {
      if (strict) throw new GoJsonError(`unknown field ${JSON.stringify(key)}${at ? ` in ${at}` : ''}`, 'unknown');
      continue;
    }
    const where = at ? `${at}.${name}` : name;
    out[name] = decodeValue(value, type.fields[name]!, out[name], where);
  }
}

function zero(type: GoType): unknown {
  switch (type.k) {
    case 'struct':
      return Object.create(null);
    case 'string':
      return '';
    case 'bool':
      return false;
    case 'number':
      return 0;
    default:
      return null;
  }
}

function decodeValue(node: JsonNode, type: GoType, current: unknown, at: string): unknown {
  switch (type.k) {
    case 'string':
      if (node.t === 'null') return current ?? '';
      if (node.t !== 'str') throw typeError(node, 'a string', at);
      return node.v;
    case 'bool':
      if (node.t === 'null') return current ?? false;
      if (node.t !== 'bool') throw typeError(node, 'a boolean', at);
      return node.v;
    case 'number':
      if (node.t === 'null') return current ?? 0;
      if (node.t !== 'num') throw typeError(node, 'a number', at);
      return Number(node.raw);
    case 'struct': {
      const target = (current as GoStruct | undefined) ?? (Object.create(null) as GoStruct);
      if (node.t === 'null') return target;
      if (node.t !== 'obj') throw typeError(node, 'an object', at);
      decodeStruct(node, type, target, at);
      return target;
    }
    case 'ptr': {
      if (node.t === 'null') return null;
      if (node.t !== 'obj') throw typeError(node, 'an object', at);
      const target = (current as GoStruct | null | undefined) ?? (Object.create(null) as GoStruct);
      decodeStruct(node, type.to, target, at);
      return target;
    }
    case 'map': {
      if (node.t === 'null') return null;
      if (node.t !== 'obj') throw typeError(node, 'an object', at);
      const map = (current as Map<string, unknown> | null | undefined) ?? new Map<string, unknown>();
      // Each map value is decoded into a zero element, then stored: no merging per key.
      for (const [key, value] of node.entries) map.set(key, decodeValue(value, type.of, zero(type.of), `${at}[${JSON.stringify(key)}]`));
      return map;
    }
    case 'slice': {
      if (node.t === 'null') return null;
      if (node.t !== 'arr') throw typeError(node, 'an array', at);
      if (node.items.length === 0) return new GoSlice([], 0);
      const previous = current instanceof GoSlice ? current : undefined;
      const items = previous ? previous.items : [];
      const length = items.length;
      const max = previous ? previous.max : 0;
      node.items.forEach((item, i) => {
        const where = `${at}[${i}]`;
        if (i < length) {
          items[i] = decodeValue(item, type.of, items[i], where);
        } else if (i < max) {
          // Go may write into an element an earlier, longer list left in the backing array.
          throw new GoJsonError(`${where}: a repeated list key decodes into memory an earlier value left behind`, 'ambiguous');
        } else {
          items[i] = decodeValue(item, type.of, zero(type.of), where);
        }
      });
      items.length = node.items.length;
      return new GoSlice(items, Math.max(max, items.length));
    }
    case 'strslice': {
      if (node.t === 'null') return null;
      if (node.t === 'str') return [node.v];
      if (node.t !== 'arr') throw typeError(node, 'a string or a list of strings', at);
      return node.items.map((item, i) => {
        if (item.t === 'null') return '';
        if (item.t !== 'str') throw typeError(item, 'a string', `${at}[${i}]`);
        return item.v;
      });
    }
  }
}
