/** The gateway's decision log: one JSON object per line, to a function, stdout or a file opened safely. */
import { closeSync, constants, fstatSync, openSync, writeSync } from 'node:fs';
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import type { Container, Peer } from '../identity/index.js';
import { peerContainer } from './identity.js';
import { formatMode } from '../native/index.js';

/** The peer as a log entry shows it. */
export interface LogPeer {
  pid: number;
  uid: number;
  gid: number;
  user: string | null;
  /**
   * `{ runtime, id }` of the peer's container, with its Docker `name` when a rule looked it
   * up; null on the host (or when unreadable).
   */
  container: { runtime: string; id: string; name?: string } | null;
  /** The peer's executable (the path /proc shows), or null when unreadable. */
  program: string | null;
}

/** One decision. */
export interface GatewayLogEntry {
  /** ISO 8601 time of the decision. */
  time: string;
  peer: LogPeer;
  /** The request method; null for a connection refused before any request. */
  method: string | null;
  /** The canonical path (the raw target when it was refused as ambiguous); null before any request. */
  path: string | null;
  /** The rule that decided, or null when none matched the peer. */
  rule: string | null;
  /** What the rules decided (also in audit mode, where the request is forwarded regardless). */
  allowed: boolean;
  /** Why. */
  reason: string;
  /** `enforce` or `audit`. */
  mode: 'enforce' | 'audit';
  /** Whether the request went to the upstream. */
  forwarded: boolean;
  /** The raw query of the request without its `?` (null when it has none, or before any request). */
  query?: string | null;
  /**
   * The status of the answer: the upstream's when the request was forwarded, the gateway's
   * own otherwise (400, 403, 413, 502); null when none was sent (the client went away or the
   * stream was cut first). Absent for a connection refused before any request.
   */
  status?: number | null;
  /** From the request's arrival to the end of its answer (an upgrade: to the upstream's answer), in ms. */
  durationMs?: number;
}

/** Where log entries go. */
export type GatewayLog = (entry: GatewayLogEntry) => void;

/** The log peer of a Peer. */
export function logPeer(peer: Peer, resolved?: { name: string } | Error): LogPeer {
  // Both /proc reads under one pin of the process.
  peer.hold();
  let c: Container | null | undefined;
  let program: string | undefined;
  try {
    c = peerContainer(peer);
    program = peer.program;
  } finally {
    peer.release();
  }
  const name = resolved === undefined || resolved instanceof Error ? undefined : resolved.name;
  return {
    pid: peer.pid,
    uid: peer.uid,
    gid: peer.gid,
    user: peer.user ?? null,
    container: c ? { runtime: c.runtime, id: c.id, ...(name !== undefined && { name }) } : null,
    program: program ?? null,
  };
}

/** A peer's JSON, made once: the gateway keeps one LogPeer per connection. */
const peerJson = new WeakMap<LogPeer, string>();

/**
 * Characters JSON.stringify leaves raw that end or hide a line for some reader of the
 * log: DEL and the C1 controls (U+0085 is a line end to some tools, U+009B a terminal
 * escape) and U+2028/U+2029 (line ends to JavaScript and to many editors).
 */
const RAW_CONTROLS = /[\u007f-\u009f\u2028\u2029]/g;

function escapeControl(c: string): string {
  return '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0');
}

/** JSON text with every control character escaped (JSON.stringify already escapes C0). */
function json(value: unknown): string {
  return JSON.stringify(value).replace(RAW_CONTROLS, escapeControl);
}

/** JSON text of a string: printable ASCII without a quote or a backslash is its own, anything else is json()'s. */
function jsonString(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return json(s);
  }
  return '"' + s + '"';
}

/** JSON of the strings that repeat from line to line (methods, rule names, the reasons of allowed requests), made once each. */
const repeated = new Map<string, string>();
const REPEATED_MAX = 1024;

function repeatedJson(s: string | null): string {
  if (s === null) return 'null';
  let j = repeated.get(s);
  if (j === undefined) {
    if (repeated.size >= REPEATED_MAX) repeated.clear();
    repeated.set(s, (j = jsonString(s)));
  }
  return j;
}

/**
 * One log line: `JSON.stringify(entry) + '\n'` with the characters above escaped too (it
 * parses back to the same entry), the peer part serialised once per connection.
 */
export function logLine(e: GatewayLogEntry): string {
  let peer = peerJson.get(e.peer);
  if (peer === undefined) peerJson.set(e.peer, (peer = json(e.peer)));
  const path = e.path === null ? 'null' : jsonString(e.path);
  // A denial's reason names its path: not one to keep.
  const reason = e.allowed ? repeatedJson(e.reason) : jsonString(e.reason);
  let line =
    `{"time":${jsonString(e.time)},"peer":${peer},"method":${repeatedJson(e.method)},"path":${path}` +
    `,"rule":${repeatedJson(e.rule)},"allowed":${e.allowed},"reason":${reason},"mode":${repeatedJson(e.mode)}` +
    `,"forwarded":${e.forwarded}`;
  if (e.query !== undefined) line += `,"query":${e.query === null ? 'null' : jsonString(e.query)}`;
  if (e.status !== undefined) line += `,"status":${e.status}`;
  if (e.durationMs !== undefined) line += `,"durationMs":${e.durationMs}`;
  return line + '}\n';
}

/** A sink and how to close it. */
export interface LogSink {
  write: GatewayLog;
  close(): void;
  /** Opens the file at the log's path again (after logrotate moved it); a no-op for stdout and functions. Throws when it cannot. */
  reopen(): void;
}

/**
 * Lines written once per turn of the event loop, in order: under load one write carries
 * the decisions of every request that turn handled, instead of one write (or one trip
 * through the thread pool) per request. `out` writes a batch; close() writes what is left.
 * @internal
 */
export function batched(out: (data: string) => void, end: () => void = () => {}, reopen: () => void = () => {}): LogSink {
  let queue: string[] = [];
  let scheduled = false;
  let closed = false;
  const flush = (): void => {
    scheduled = false;
    if (queue.length === 0) return;
    const data = queue.length === 1 ? queue[0]! : queue.join('');
    queue = [];
    out(data);
  };
  return {
    write: (entry) => {
      if (closed) return;
      queue.push(logLine(entry));
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    close: () => {
      if (closed) return;
      closed = true;
      flush();
      end();
    },
    reopen: () => {
      if (closed) return;
      // What is queued was decided before the move: it goes to the old file.
      flush();
      reopen();
    },
  };
}

/**
 * A sink for `log`: a function, `-` for stdout, or a file path appended to. The file is
 * opened without following a symlink, created 0600 if missing, and must be a regular
 * file that other users cannot write.
 */
export function logSink(log: unknown): LogSink | undefined {
  if (log === undefined) return undefined;
  if (typeof log === 'function') return { write: log as GatewayLog, close: () => {}, reopen: () => {} };
  if (typeof log !== 'string' || log === '') throw invalidArg('options.log', 'a function, "-" (stdout) or a file path', log);
  if (log === '-')
    return batched(
      (data) => void process.stdout.write(data),
      () => {},
    );
  let fd = openLogFile(log);
  // An append to a regular file goes to the page cache: written synchronously, once per
  // turn, it costs one system call and no thread hand-off. A failing write (disk full)
  // loses that batch, not the gateway.
  return batched(
    (data) => {
      try {
        let buf = Buffer.from(data, 'utf8');
        while (buf.length > 0) buf = buf.subarray(writeSync(fd, buf));
      } catch {
        // Dropped: the decisions were made and answered; only their record is lost.
      }
    },
    () => closeSync(fd),
    () => {
      const next = openLogFile(log);
      closeSync(fd);
      fd = next;
    },
  );
}

/**
 * Opens the log file for appending: without following a symlink, created 0600 if missing,
 * and only a regular file that other users cannot write.
 */
function openLogFile(log: string): number {
  let fd: number;
  try {
    fd = openSync(log, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (cause) {
    throw new SecpolicyError(ErrorCode.UNSAFE_PATH, `${log}: cannot open the log file (${(cause as NodeJS.ErrnoException).code})`, {
      path: log,
      cause,
    });
  }
  const stat = fstatSync(fd);
  if (!stat.isFile() || stat.mode & 0o022) {
    closeSync(fd);
    throw new SecpolicyError(
      ErrorCode.UNSAFE_PATH,
      `${log}: the log file must be a regular file that only its owner can write (found ${stat.isFile() ? `mode ${formatMode(stat.mode)}` : 'not a regular file'})`,
      { path: log },
    );
  }
  return fd;
}
