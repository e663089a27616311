/** The gateway's decision log: one JSON object per line, to a function, stdout or a file opened safely. */
import { closeSync, constants, fstatSync, openSync, write } from 'node:fs';
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import type { Peer } from '../identity/peer.js';
import { formatMode } from '../native/index.js';

/** The peer as a log entry shows it. */
export interface LogPeer {
  pid: number;
  uid: number;
  gid: number;
  user: string | null;
  /** `{ runtime, id }` of the peer's container; null on the host (or when unreadable). */
  container: { runtime: string; id: string } | null;
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
  /** The status the gateway answered with itself (400, 403, 413), when it did. */
  status?: number;
}

/** Where log entries go. */
export type GatewayLog = (entry: GatewayLogEntry) => void;

/** The log peer of a Peer. */
export function logPeer(peer: Peer): LogPeer {
  const c = peer.container;
  return { pid: peer.pid, uid: peer.uid, gid: peer.gid, user: peer.user ?? null, container: c ? { runtime: c.runtime, id: c.id } : null };
}

/** A sink and how to close it. */
export interface LogSink {
  write: GatewayLog;
  close(): void;
}

/**
 * A sink for `log`: a function, `-` for stdout, or a file path appended to. The file is
 * opened without following a symlink, created 0600 if missing, and must be a regular
 * file that other users cannot write.
 */
export function logSink(log: unknown): LogSink | undefined {
  if (log === undefined) return undefined;
  if (typeof log === 'function') return { write: log as GatewayLog, close: () => {} };
  if (typeof log !== 'string' || log === '') throw invalidArg('options.log', 'a function, "-" (stdout) or a file path', log);
  if (log === '-') return { write: (entry) => void process.stdout.write(JSON.stringify(entry) + '\n'), close: () => {} };
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
  // Lines are queued and written in order, one write at a time.
  let queue: string[] = [];
  let writing = false;
  let closed = false;
  const flush = (): void => {
    if (writing || queue.length === 0) return;
    const data = queue.join('');
    queue = [];
    writing = true;
    write(fd, data, null, 'utf8', () => {
      writing = false;
      if (queue.length) flush();
      else if (closed) closeSync(fd);
    });
  };
  return {
    write: (entry) => {
      if (closed) return;
      queue.push(JSON.stringify(entry) + '\n');
      flush();
    },
    close: () => {
      if (closed) return;
      closed = true;
      if (!writing && queue.length === 0) closeSync(fd);
    },
  };
}
