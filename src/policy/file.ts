/**
 * Policy files: YAML or JSON (JSON is read as YAML 1.2, of which it is a subset) turned
 * into the same Policy and Rule objects the builder makes. Every error is
 * ERR_SECPOLICY_POLICY_FILE and names the field path and its line:
 * `anyOf[1].memberOf (line 4): must be ...`.
 */
import { constants, lstatSync, realpathSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { ErrorCode, SecpolicyError, invalidArg, isSecpolicyError } from '../errors.js';
import { escapeText } from '../escape.js';
import { formatMode } from '../native/index.js';
import { Policy } from './policy.js';
import { isMapping, rulesOf, ruleOf, show, type FieldPath, type Walk } from './schema.js';
import * as v from '../validate.js';

/** Options of {@link parsePolicy}. */
export interface ParsePolicyOptions {
  /**
   * Where the text came from: prefixed to error messages, and the directory a relative
   * `sharedSecret.keyFile` is resolved against. @default none (relative key files resolve against the working directory)
   */
  source?: string;
}

/** The largest policy file read; a policy is a few lines, anything bigger is a mistake. */
const MAX_FILE_BYTES = 1024 * 1024;

/** A file document's version; `version: 1` is the only one so far. */
const VERSIONS: readonly unknown[] = [1];

/**
 * Parses a policy document (YAML or JSON text, or an already-parsed object) into a Policy.
 * Throws ERR_SECPOLICY_POLICY_FILE naming the field and line of the first problem.
 */
export function parsePolicy(input: string | object, options?: ParsePolicyOptions): Policy {
  return parseDocumentWith(build, input, options);
}

/**
 * @internal Validates a document's input and options and hands the parsed document, with
 * the walk that names fields and lines, to `build` (policy files and gateway policies alike).
 */
export function parseDocumentWith<T>(
  build: (doc: unknown, walk: Walk, source: string | undefined) => T,
  input: string | object,
  options?: ParsePolicyOptions,
): T {
  const o = v.options<ParsePolicyOptions>('options', options);
  if (o.source !== undefined && !v.isName(o.source)) throw invalidArg('options.source', 'a non-empty string', o.source);
  if (typeof input === 'string') {
    const text = new TextSource(input, o.source);
    return build(text.value(), text, o.source);
  }
  if (typeof input !== 'object' || input === null) throw invalidArg('input', 'policy text or a policy object', input);
  return build(input, new ObjectSource(o.source), o.source);
}

/**
 * Reads and parses a policy file. A policy decides who is let in, so the file is held to
 * the standard of a key file: it is opened without following a symlink, and refused
 * (ERR_SECPOLICY_POLICY_FILE) unless the opened file is a regular file of known size that
 * belongs to root or to us and that neither its group nor other users may write, in
 * directories that only root or we could change (or sticky ones, like /tmp). An
 * unreadable file fails the same way, with the file system error as `cause`.
 */
export async function loadPolicy(file: string): Promise<Policy> {
  if (!v.isName(file)) throw invalidArg('file', 'a non-empty path', file);
  return parsePolicy(await readPolicyFile(file), { source: file });
}

const S_ISVTX = 0o1000;

/**
 * @internal The text of a policy file, with every check loadPolicy() applies; other
 * document kinds (the gateway's) read their files through it.
 */
export async function readPolicyText(file: string): Promise<string> {
  if (!v.isName(file)) throw invalidArg('file', 'a non-empty path', file);
  return readPolicyFile(file);
}

/** The text of a policy file that nobody but root and us controls (see {@link loadPolicy}). */
async function readPolicyFile(file: string): Promise<string> {
  let handle: FileHandle | undefined;
  try {
    checkPolicyDirectories(file);
    try {
      // O_NOFOLLOW: a symlink at the path is refused, not followed. O_NONBLOCK: a FIFO
      // at the path must not hang the caller; it is refused below.
      handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ELOOP')
        throw unsafe(file, 'is a symbolic link: it is not followed (name the file itself)');
      throw e;
    }
    // Checked on the open file, so that what is checked is what is read.
    const stat = await handle.stat();
    if (!stat.isFile()) throw new Error('not a regular file');
    const me = process.geteuid?.() ?? 0;
    if (stat.uid !== 0 && stat.uid !== me)
      throw unsafe(file, `belongs to uid ${stat.uid}, who could change who is allowed: it must belong to root or to uid ${me}`);
    if (stat.mode & 0o002)
      throw unsafe(file, `is writable by every user (mode ${formatMode(stat.mode)}): anyone could change who is allowed`);
    if (stat.mode & 0o020)
      throw unsafe(
        file,
        `is writable by its group (gid ${stat.gid}, mode ${formatMode(stat.mode)}): its members could change who is allowed`,
      );
    if (stat.size > MAX_FILE_BYTES) throw new Error(`the file is larger than ${MAX_FILE_BYTES} bytes`);
    // One byte more than the file says it holds: a /proc or /sys file reports a size (0,
    // 4096) unrelated to what it reads, and a file that is being written is not a policy yet.
    const buf = Buffer.alloc(stat.size + 1);
    let got = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
      if (got === buf.length) break;
    }
    if (got !== stat.size)
      throw unsafe(
        file,
        `reports a size of ${stat.size} bytes but ${got === buf.length ? 'more' : got} could be read: its size cannot be known (a /proc or /sys file?) or it is being changed`,
      );
    return new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, got));
  } catch (e) {
    if (isSecpolicyError(e)) throw e;
    throw new SecpolicyError(ErrorCode.POLICY_FILE, `${file}: cannot read the policy file: ${(e as Error).message}`, {
      cause: e,
      path: file,
    });
  } finally {
    await handle?.close();
  }
}

/**
 * Refuses a policy file in a directory (or below one) where someone other than root and
 * us could put another file in its place: a directory owned by another non-root user, or
 * writable by its group or by everyone without the sticky bit. The path as written and
 * its real path are both walked, so a symlinked directory is judged by where it points
 * and by who could swap the link.
 */
function checkPolicyDirectories(file: string): void {
  const me = process.geteuid?.() ?? 0;
  const written = dirname(resolve(file));
  const seen = new Set<string>();
  for (let dir of [written, realpathSync(written)]) {
    for (;;) {
      if (!seen.has(dir)) {
        seen.add(dir);
        const s = lstatSync(dir);
        const what = s.isSymbolicLink() ? 'symbolic link' : 'directory';
        if (s.uid !== 0 && s.uid !== me)
          throw unsafe(file, `is in ${what} ${dir}, which belongs to uid ${s.uid}: that user could replace the policy file`);
        // A link's own mode means nothing; the directory holding it is checked in its turn.
        if (!s.isSymbolicLink() && s.mode & 0o022 && !(s.mode & S_ISVTX))
          throw unsafe(
            file,
            `is in directory ${dir}, which ${s.mode & 0o002 ? 'every user' : `its group (gid ${s.gid})`} may write without the sticky bit (mode ${formatMode(s.mode)}): the policy file could be replaced`,
          );
      }
      if (dir === '/') break;
      dir = dirname(dir);
    }
  }
}

function unsafe(file: string, why: string): SecpolicyError {
  return new SecpolicyError(ErrorCode.POLICY_FILE, `${file}: the policy file ${why}`, { path: file });
}

/** Turns the plain document into a Policy. */
function build(doc: unknown, walk: Walk, source: string | undefined): Policy {
  if (doc === null || doc === undefined)
    walk.fail([], 'the policy is empty: write at least one rule (an empty policy would allow every peer)');
  if (Array.isArray(doc)) return new Policy().rule(ruleOf(doc, [], walk), 'anyOf');
  if (!isMapping(doc)) walk.fail([], `must be a rule object (a mapping such as { uid: 0 }). Received ${show(doc)}`);
  if ('version' in doc && !VERSIONS.includes(doc.version))
    walk.fail(['version'], `must be 1 (the only policy file version). Received ${show(doc.version)}`);
  if ('strict' in doc && typeof doc.strict !== 'boolean') walk.fail(['strict'], `must be true or false. Received ${show(doc.strict)}`);
  const rules = rulesOf(doc, [], walk, true);
  const policy = new Policy({ strict: doc.strict === true });
  for (const [slot, rule] of rules) policy.rule(rule, slot);
  if ('sharedSecret' in doc) policy.sharedSecret({ keyFile: keyFileOf(doc.sharedSecret, walk, source) });
  return policy;
}

/**
 * `sharedSecret` in a file names a key file, never the secret itself: policy files are
 * checked into repositories and left world-readable, key files get 0600 and their own checks.
 */
function keyFileOf(value: unknown, walk: Walk, source: string | undefined): string {
  const at = ['sharedSecret'];
  if (!isMapping(value)) {
    walk.fail(
      at,
      `must be { keyFile: <path> }; inline secrets are refused in policy files (they end up in repositories and readable files). Received ${secretShape(value)}`,
    );
  }
  for (const key of Object.keys(value)) {
    if (key !== 'keyFile') {
      const why = /secret|key|hex|base64/i.test(key)
        ? 'inline secrets are refused in policy files: put the key in a file and give its path as keyFile'
        : `unknown key "${key}": only keyFile is allowed`;
      walk.fail([...at, key], why, true);
    }
  }
  const keyFile = value.keyFile;
  if (!v.isName(keyFile)) walk.fail([...at, 'keyFile'], `must be the path of a key file. Received ${show(keyFile)}`);
  if (isAbsolute(keyFile)) return keyFile;
  return source === undefined ? resolve(keyFile) : resolve(dirname(source), keyFile);
}

/** What a misplaced secret looks like, without a byte of its content. */
function secretShape(value: unknown): string {
  return Array.isArray(value) ? 'a list' : value === null ? 'null' : `a ${typeof value}`;
}

/** `anyOf[1].memberOf` */
export function formatPath(path: FieldPath): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

function fileError(source: string | undefined, path: FieldPath, line: number | undefined, message: string): SecpolicyError {
  const where = [source && `${source}:`, path.length ? formatPath(path) : 'document', line !== undefined && `(line ${line})`]
    .filter(Boolean)
    .join(' ');
  return new SecpolicyError(ErrorCode.POLICY_FILE, `${where}: ${message}`, {
    field: formatPath(path),
    ...(line !== undefined && { line }),
  });
}

/** @internal A document given as an object: paths but no lines. */
export class ObjectSource implements Walk {
  constructor(readonly name: string | undefined) {}
  fail(path: FieldPath, message: string): never {
    throw fileError(this.name, path, undefined, message);
  }
  source(): undefined {
    return undefined;
  }
}

/** @internal A document parsed from text, which keeps each node's position for messages. */
export class TextSource implements Walk {
  readonly #doc: Document.Parsed;
  readonly #lines = new LineCounter();
  readonly #name: string | undefined;

  constructor(text: string, name: string | undefined) {
    this.#name = name;
    this.#doc = parseDocument(text, { lineCounter: this.#lines, prettyErrors: true, uniqueKeys: true, logLevel: 'error' });
    const error = this.#doc.errors[0];
    if (error) {
      const pos = error.linePos?.[0];
      const line = pos?.line;
      const what = error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      const at = pos ? `line ${pos.line}, column ${pos.col}` : 'document';
      const where = [name && `${name}:`, at].filter(Boolean).join(' ');
      // The parser's own message repeats itself around the excerpt: say each thing once,
      // and give the excerpt separately (`snippet`) so that one-line output stays one line.
      throw new SecpolicyError(ErrorCode.POLICY_FILE, `${where}: not valid YAML or JSON: ${what}`, {
        cause: error,
        ...(line !== undefined && { line, column: pos!.col, snippet: snippet(text, pos!.line, pos!.col) }),
      });
    }
  }

  /** The document as plain data; aliases are expanded (bounded against alias bombs). */
  value(): unknown {
    try {
      return this.#doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      throw new SecpolicyError(
        ErrorCode.POLICY_FILE,
        `${this.#name ? `${this.#name}: ` : ''}cannot read the document: ${(e as Error).message}`,
        { cause: e },
      );
    }
  }

  fail(path: FieldPath, message: string, key = false): never {
    const node = this.#node(path, key) ?? this.#node(path.slice(0, -1), false);
    const line = node?.range ? this.#lines.linePos(node.range[0]).line : undefined;
    throw fileError(this.#name, path, line, message);
  }

  source(path: FieldPath): string | undefined {
    const node = this.#node(path, false);
    return isScalar(node) && typeof node.source === 'string' ? node.source : undefined;
  }

  /** The node at a path (the key node of the last step when `key`). */
  #node(path: FieldPath, key: boolean): Node | undefined {
    let node: unknown = this.#doc.contents;
    for (let i = 0; i < path.length; i++) {
      if (isAlias(node)) node = node.resolve(this.#doc);
      const step = path[i];
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) : p.key) === step);
        if (!pair) return undefined;
        node = key && i === path.length - 1 ? pair.key : pair.value;
      } else if (isSeq(node) && typeof step === 'number') {
        node = node.items[step];
      } else {
        return undefined;
      }
    }
    if (isAlias(node)) node = node.resolve(this.#doc);
    return (node ?? undefined) as Node | undefined;
  }
}

const SNIPPET_WIDTH = 72;

/**
 * The source line of a syntax error and a caret under its column (1-based), escaped so
 * that the file's bytes cannot draw on the terminal, cut around the column when long.
 */
function snippet(text: string, line: number, column: number): string {
  const lines = text.split(/\r?\n/);
  const source = lines[line - 1] ?? '';
  if (source === '' && line >= lines.length) return '(at the end of the document)';
  const col = Math.max(1, Math.min(column, source.length + 1));
  const start = Math.max(0, col - 1 - Math.floor(SNIPPET_WIDTH / 2));
  const cut = source.slice(start, start + SNIPPET_WIDTH);
  const before = escapeText(cut.slice(0, col - 1 - start));
  const shown = escapeText(cut);
  return `${start > 0 ? '...' : ''}${shown}${start + SNIPPET_WIDTH < source.length ? '...' : ''}\n${' '.repeat((start > 0 ? 3 : 0) + before.length)}^`;
}
