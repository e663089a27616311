/**
 * UNIX sockets of our network namespace, from the kernel's sock_diag netlink interface
 * (NETLINK_SOCK_DIAG, unix_diag): state, inode, bound name, the bound file's device and
 * inode, the peer's inode and the owner's uid. One netlink dump lists every socket; a
 * single-inode query answers "who is the other end of this socket" for strict mode.
 * Where netlink is unavailable (a kernel without unix_diag, a seccomp filter), the list
 * falls back to /proc/net/unix (unix-sockets.ts), which lacks peers, uids and file identity.
 */
import { closeSync, openSync } from 'node:fs';
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import { Errno, errnoError, libc, libcFunction } from './libc.js';
import { SOCKET_TYPES, procNetUnix, type UnixSocketInfo, type UnixSocketState } from './unix-sockets.js';

export type { UnixSocketInfo, UnixSocketState, UnixSocketType } from './unix-sockets.js';

/** A listing and where it came from. */
export interface UnixSocketList {
  /** `netlink` (complete) or `proc` (/proc/net/unix: no peer, uid, vfs or queue). */
  source: 'netlink' | 'proc';
  sockets: UnixSocketInfo[];
}

/** Options of {@link listUnixSockets}. */
export interface ListUnixSocketsOptions {
  /** Only these states. @default every state */
  states?: UnixSocketState[];
  /** Fall back to /proc/net/unix when netlink fails. @default true */
  fallback?: boolean;
}

const AF_NETLINK = 16;
const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const MSG_DONTWAIT = 0x40;

const UDIAG_SHOW_NAME = 0x1;
const UDIAG_SHOW_VFS = 0x2;
const UDIAG_SHOW_PEER = 0x4;
const UDIAG_SHOW_ICONS = 0x8;
const UDIAG_SHOW_RQLEN = 0x10;
const UDIAG_SHOW_UID = 0x40;
const SHOW_ALL = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID;

const UNIX_DIAG_NAME = 0;
const UNIX_DIAG_VFS = 1;
const UNIX_DIAG_PEER = 2;
const UNIX_DIAG_ICONS = 3;
const UNIX_DIAG_RQLEN = 4;
const UNIX_DIAG_UID = 7;

// Kernel state numbers (include/net/tcp_states.h) as UNIX sockets use them.
const STATE_CODES: Record<Exclude<UnixSocketState, 'other'>, number> = { established: 1, connecting: 2, unconnected: 7, listen: 10 };
const STATE_NAMES = new Map<number, UnixSocketState>(Object.entries(STATE_CODES).map(([k, v]) => [v, k as UnixSocketState]));
const ALL_STATES = 0xffffffff;

// nlmsghdr (16) + unix_diag_req (24).
const REQUEST_SIZE = 40;
const request = Buffer.alloc(REQUEST_SIZE);
// A dump skb holds up to 32 KiB of messages; a larger buffer never truncates one.
const RECV_SIZE = 256 * 1024;
let recvBuf: Buffer | undefined;
let seq = 0;

function openDiag(): number {
  const c = libc();
  const fd = c.socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG) as number;
  if (fd < 0) throw errnoError('socket(NETLINK_SOCK_DIAG)', c.errno());
  return fd;
}

const SIOCGSKNS = 0x894c;
const CLONE_NEWNET = 0x40000000;

/**
 * A sock_diag socket in the network namespace of socket `fd`. An accepted socket lives in
 * the connecting process's network namespace (a container's), where our own netlink
 * socket cannot see it. The namespace is entered only by this thread, only for socket(),
 * and left at once: needs CAP_SYS_ADMIN (root).
 */
function openDiagIn(fd: number): number {
  const c = libc();
  const target = c.ioctl(fd, SIOCGSKNS, 0) as number;
  if (target < 0) throw errnoError('ioctl(SIOCGSKNS)', c.errno(), ErrorCode.NATIVE, "cannot reach the socket's network namespace");
  let home: number | undefined;
  try {
    home = openSync('/proc/thread-self/ns/net', 'r');
    if (c.setns(target, CLONE_NEWNET) !== 0)
      throw errnoError('setns(CLONE_NEWNET)', c.errno(), ErrorCode.NATIVE, "entering the socket's network namespace needs root");
    try {
      return openDiag();
    } finally {
      // Without this the thread would stay in the peer's namespace: never skip it.
      if (c.setns(home, CLONE_NEWNET) !== 0)
        // eslint-disable-next-line no-unsafe-finally -- a thread left in the peer's namespace is worse than a lost error
        throw errnoError('setns(CLONE_NEWNET)', c.errno(), ErrorCode.NATIVE, 'cannot return to our network namespace');
    }
  } finally {
    c.close(target);
    if (home !== undefined) closeSync(home);
  }
}

function sendRequest(fd: number, flags: number, states: number, inode: number, show = SHOW_ALL): number {
  seq = (seq + 1) >>> 0;
  request.fill(0);
  request.writeUInt32LE(REQUEST_SIZE, 0);
  request.writeUInt16LE(SOCK_DIAG_BY_FAMILY, 4);
  request.writeUInt16LE(flags, 6);
  request.writeUInt32LE(seq, 8);
  request[16] = AF_UNIX;
  request.writeUInt32LE(states >>> 0, 20);
  request.writeUInt32LE(inode >>> 0, 24);
  request.writeUInt32LE(show, 28);
  // No cookie: the kernel accepts ~0 as "any socket with this inode".
  request.writeUInt32LE(0xffffffff, 32);
  request.writeUInt32LE(0xffffffff, 36);
  const c = libc();
  if (c.send(fd, request, REQUEST_SIZE, 0) !== REQUEST_SIZE) throw errnoError('send(NETLINK_SOCK_DIAG)', c.errno());
  return seq;
}

/**
 * Reads replies until NLMSG_DONE (dump) or the first answer (single query), handing each
 * unix_diag_msg to `onMessage`. The kernel queues each part before recv returns, so
 * MSG_DONTWAIT never blocks the event loop; EAGAIN means an incomplete answer.
 */
function receive(fd: number, expectSeq: number, dump: boolean, onMessage: (buf: Buffer, start: number, end: number) => void): void {
  const c = libc();
  const buf = (recvBuf ??= Buffer.allocUnsafe(RECV_SIZE));
  for (;;) {
    const n = Number(c.recv(fd, buf, RECV_SIZE, MSG_DONTWAIT));
    if (n < 0) {
      const errno = c.errno();
      if (errno === Errno.EINTR) continue;
      throw errnoError(
        'recv(NETLINK_SOCK_DIAG)',
        errno,
        ErrorCode.NATIVE,
        errno === Errno.EAGAIN ? 'the kernel sent an incomplete answer' : '',
      );
    }
    if (n === 0) throw new SecpolicyError(ErrorCode.NATIVE, 'recv(NETLINK_SOCK_DIAG) returned no data');
    let off = 0;
    while (off + 16 <= n) {
      const len = buf.readUInt32LE(off);
      if (len < 16 || off + len > n) throw new SecpolicyError(ErrorCode.NATIVE, 'malformed netlink message from sock_diag');
      const type = buf.readUInt16LE(off + 4);
      if (buf.readUInt32LE(off + 8) === expectSeq) {
        if (type === NLMSG_DONE) return;
        if (type === NLMSG_ERROR) {
          const err = -buf.readInt32LE(off + 16);
          if (err === 0 && !dump) return;
          throw errnoError('sock_diag', err, ErrorCode.NATIVE);
        }
        if (type === SOCK_DIAG_BY_FAMILY) {
          onMessage(buf, off + 16, off + len);
          if (!dump) return;
        }
      }
      off += (len + 3) & ~3;
    }
  }
}

function parseMessage(buf: Buffer, start: number, end: number): UnixSocketInfo {
  const info: UnixSocketInfo = {
    inode: buf.readUInt32LE(start + 4),
    type: SOCKET_TYPES.get(buf[start + 1]!) ?? 'other',
    state: STATE_NAMES.get(buf[start + 2]!) ?? 'other',
  };
  // struct unix_diag_msg is 16 bytes; netlink attributes (rtattr) follow, 4-aligned.
  let off = start + 16;
  while (off + 4 <= end) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > end) break;
    const type = buf.readUInt16LE(off + 2);
    const data = off + 4;
    const size = len - 4;
    switch (type) {
      case UNIX_DIAG_NAME:
        info.name = decodeName(buf, data, size);
        break;
      case UNIX_DIAG_VFS:
        if (size >= 8) info.vfs = { ino: buf.readUInt32LE(data), dev: buf.readUInt32LE(data + 4) };
        break;
      case UNIX_DIAG_PEER:
        if (size >= 4) info.peer = buf.readUInt32LE(data);
        break;
      case UNIX_DIAG_ICONS: {
        // The inodes of the connections waiting in a listener's accept queue (u32 each).
        const icons: number[] = [];
        for (let i = 0; i + 4 <= size; i += 4) icons.push(buf.readUInt32LE(data + i));
        info.icons = icons;
        break;
      }
      case UNIX_DIAG_RQLEN:
        if (size >= 8) info.queue = { read: buf.readUInt32LE(data), write: buf.readUInt32LE(data + 4) };
        break;
      case UNIX_DIAG_UID:
        if (size >= 4) info.uid = buf.readUInt32LE(data);
        break;
    }
    off += (len + 3) & ~3;
  }
  return info;
}

// Abstract names as `@name` (latin1) like socket.ts, without the trailing NUL padding
// that libuv adds (it binds abstract names with the full sun_path length); paths up to their NUL.
function decodeName(buf: Buffer, start: number, size: number): string | undefined {
  if (size <= 0) return undefined;
  if (buf[start] === 0) {
    let end = start + size;
    while (end > start + 1 && buf[end - 1] === 0) end--;
    return `@${buf.toString('latin1', start + 1, end)}`;
  }
  let end = start;
  while (end < start + size && buf[end] !== 0) end++;
  return buf.toString('utf8', start, end);
}

function stateMask(states: readonly UnixSocketState[] | undefined): number {
  if (states === undefined) return ALL_STATES;
  if (!Array.isArray(states) || states.length === 0) throw invalidArg('options.states', 'a non-empty array of socket states', states);
  let mask = 0;
  states.forEach((s, i) => {
    if (s === 'other') mask |= ~Object.values(STATE_CODES).reduce((m, c) => m | (1 << c), 0);
    else if (typeof s === 'string' && Object.hasOwn(STATE_CODES, s)) mask |= 1 << STATE_CODES[s as keyof typeof STATE_CODES];
    else throw invalidArg(`options.states[${i}]`, `one of ${[...Object.keys(STATE_CODES), 'other'].join(', ')}`, s);
  });
  return mask >>> 0;
}

/**
 * Every UNIX socket of our network namespace, through one netlink dump. `vfs: false`
 * leaves out the bound file's identity (a third of the kernel's work for the dump), for
 * a caller that never looks at it. Throws ERR_SECPOLICY_NATIVE on failure.
 */
export function dumpUnixSockets(states: number = ALL_STATES, options: { vfs?: boolean } = {}): UnixSocketInfo[] {
  const fd = openDiag();
  try {
    const out: UnixSocketInfo[] = [];
    const s = sendRequest(fd, NLM_F_REQUEST | NLM_F_DUMP, states, 0, options.vfs === false ? SHOW_ALL & ~UDIAG_SHOW_VFS : SHOW_ALL);
    receive(fd, s, true, (buf, start, end) => out.push(parseMessage(buf, start, end)));
    return out;
  } finally {
    libc().close(fd);
  }
}

/**
 * Every UNIX socket of our network namespace (or those in `options.states`), with the
 * source of the listing. Netlink first; /proc/net/unix when netlink fails (unless
 * `fallback: false`, which lets the netlink error through).
 */
export function listUnixSockets(options: ListUnixSocketsOptions = {}): UnixSocketList {
  if (typeof options !== 'object' || options === null) throw invalidArg('options', 'an object', options);
  const mask = stateMask(options.states);
  if (options.fallback !== undefined && typeof options.fallback !== 'boolean')
    throw invalidArg('options.fallback', 'a boolean', options.fallback);
  try {
    return { source: 'netlink', sockets: dumpUnixSockets(mask) };
  } catch (e) {
    if (options.fallback === false) throw e;
    const sockets = procNetUnix();
    return {
      source: 'proc',
      sockets:
        mask === ALL_STATES
          ? sockets
          : sockets.filter((s) => (mask & (1 << (STATE_CODES[s.state as keyof typeof STATE_CODES] ?? 31))) !== 0),
    };
  }
}

/** Options of {@link unixSocket}. */
export interface UnixSocketQuery {
  /**
   * One of our fds for a socket in the namespace to search (e.g. an accepted connection
   * from a container): when the inode is not in our network namespace, it is looked for
   * in that socket's (root only).
   */
  via?: number;
}

/**
 * One socket by inode, or undefined when no such UNIX socket exists (in our network
 * namespace, or that of `options.via`). Throws ERR_SECPOLICY_NATIVE when netlink is unavailable.
 */
export function unixSocket(inode: number, options: UnixSocketQuery = {}): UnixSocketInfo | undefined {
  if (!Number.isInteger(inode) || inode <= 0 || inode > 0xffffffff) throw invalidArg('inode', 'a positive 32-bit inode number', inode);
  const via = options.via;
  if (via !== undefined && (!Number.isInteger(via) || via < 0)) throw invalidArg('options.via', 'a file descriptor', via);
  return queryHome(inode) ?? (via === undefined ? undefined : queryOne(openDiagIn(via), inode));
}

// One netlink socket of our namespace serves every single-inode query of this thread
// (strict mode makes three per verification); a failed query closes it.
let homeDiag: number | undefined;

function queryHome(inode: number): UnixSocketInfo | undefined {
  const fd = (homeDiag ??= openDiag());
  try {
    return queryOne(fd, inode, false);
  } catch (e) {
    if (homeDiag === fd) homeDiag = undefined;
    libc().close(fd);
    throw e;
  }
}

/** Asks netlink socket `fd` for one inode, then closes it (unless `close` is false). */
function queryOne(fd: number, inode: number, close = true): UnixSocketInfo | undefined {
  try {
    let found: UnixSocketInfo | undefined;
    const s = sendRequest(fd, NLM_F_REQUEST, ALL_STATES, inode);
    try {
      receive(fd, s, false, (buf, start, end) => (found = parseMessage(buf, start, end)));
    } catch (e) {
      // ENOENT: no socket with that inode (it was closed).
      if ((e as SecpolicyError).errno === Errno.ENOENT) return undefined;
      throw e;
    }
    return found;
  } finally {
    if (close) libc().close(fd);
  }
}

/** The inode of the socket connected to socket `inode`; undefined when it has none (or is gone). */
export function unixPeerInode(inode: number, options: UnixSocketQuery = {}): number | undefined {
  return unixSocket(inode, options)?.peer;
}

// FIONREAD, the same number on x86-64 and arm64 (asm-generic).
const SIOCINQ = 0x541b;
const inq = Buffer.alloc(4);

/**
 * Bytes queued to read on connected UNIX socket `fd` (ioctl SIOCINQ): the kernel computes
 * it with the function that fills sock_diag's UNIX_DIAG_RQLEN, without a netlink round
 * trip, and in whatever network namespace the socket lives. Throws ERR_SECPOLICY_NATIVE.
 */
export function queuedToRead(fd: number): number {
  if (!Number.isInteger(fd) || fd < 0) throw invalidArg('fd', 'a file descriptor', fd);
  const ioctl = libcFunction('int ioctl(int fd, unsigned long request, void *arg)');
  if (ioctl(fd, SIOCINQ, inq) !== 0) throw errnoError('ioctl(SIOCINQ)', libc().errno());
  return inq.readInt32LE(0);
}
