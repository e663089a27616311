/**
 * Socket-level identity from the kernel: SO_PEERCRED, SO_PEERGROUPS, SO_PEERSEC and the
 * addresses of both ends (SO_PEERPIDFD lives in pidfd.ts). Every function takes a raw fd; the fd of
 * a net.Socket comes from {@link socketFd} and that of a listening net.Server from
 * {@link listenerHandle}, the only readers of `_handle`.
 */
import type { Server, Socket } from 'node:net';
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import { Errno, errnoError, libc } from './libc.js';

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const SO_PEERSEC = 31;
const SO_PEERGROUPS = 59;

/** Credentials of the peer as of connect() (or listen() for the client's view of a server). */
export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

/**
 * The file descriptor behind a connected net.Socket. Node has no public way to tell it
 * (nodejs/node#4763: an implementation detail), so this and {@link socketHandle} are the
 * only places in the package that read Node's private `socket._handle` and its `fd`, and
 * they fail closed: a Node.js without that field, or whose handle has no numeric fd, gets
 * ERR_SECPOLICY_UNSUPPORTED_PLATFORM, never a guess.
 */
export function socketFd(socket: Socket): number {
  return handleFdOf(socketHandle(socket));
}

let pipeHandle: unknown;

/**
 * The handle behind a connected net.Socket (its `_handle`), checked to be a handle that
 * can be a UNIX socket (not TCP); its fd is read by {@link socketFd}.
 */
export function socketHandle(socket: Socket): object {
  if (typeof socket !== 'object' || socket === null || typeof (socket as Socket).write !== 'function') {
    throw invalidArg('socket', 'a net.Socket', socket);
  }
  const handle = (socket as unknown as { _handle?: unknown })._handle;
  if (handle == null) {
    if (!('_handle' in socket)) {
      throw new SecpolicyError(
        ErrorCode.UNSUPPORTED_PLATFORM,
        `this Node.js (${process.version}) keeps no _handle on net.Socket: the socket's file descriptor cannot be found`,
      );
    }
    throw new SecpolicyError(ErrorCode.PEER_UNAVAILABLE, 'the socket is closed or not connected (it has no handle)');
  }
  if (typeof handle !== 'object') {
    throw new SecpolicyError(
      ErrorCode.UNSUPPORTED_PLATFORM,
      `this Node.js (${process.version}) keeps a ${typeof handle} as a socket's _handle`,
    );
  }
  // A TCP handle is never a UNIX socket; Pipe handles are checked by the kernel. The Pipe
  // constructor, once seen, is known by identity (no name lookup per connection).
  const ctor = (handle as { constructor?: unknown }).constructor;
  if (ctor !== pipeHandle) {
    const name = (ctor as { name?: unknown } | undefined)?.name;
    if (name === 'TCP') throw new SecpolicyError(ErrorCode.NOT_UNIX_SOCKET, 'the socket is a TCP socket, not a UNIX domain socket');
    if (name === 'Pipe') pipeHandle = ctor;
  }
  return handle;
}

/** The fd of a socket's handle from {@link socketHandle}; throws (fails closed) when it has none. */
function handleFdOf(handle: object): number {
  const fd = (handle as { fd?: unknown }).fd;
  if (typeof fd !== 'number') {
    throw new SecpolicyError(
      ErrorCode.UNSUPPORTED_PLATFORM,
      `this Node.js (${process.version}) gives a socket's handle no numeric fd (${typeof fd}): the socket's file descriptor cannot be found`,
    );
  }
  if (fd < 0) throw new SecpolicyError(ErrorCode.PEER_UNAVAILABLE, 'the socket has no file descriptor (closed, or not yet connected)');
  return fd;
}

/**
 * The listening handle of a net.Server, or undefined while it is not listening. The handle
 * object tells one listen() from the next: a server closed and listening again has a new
 * one. Returned as an opaque object (no allocation: it is compared on every connection).
 */
export function listenerHandle(server: Server): object | undefined {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const handle = (server as any)?._handle;
  return handle != null && typeof handle === 'object' ? handle : undefined;
}

/** The fd of a handle from {@link listenerHandle}; undefined when it has none (closed, or a cluster worker's). */
export function handleFd(handle: object): number | undefined {
  const fd = (handle as { fd?: unknown }).fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

// Preallocated out-buffers: calls are synchronous on one thread, so one set serves all.
const credBuf = Buffer.alloc(12);
const lenBuf = Buffer.alloc(4);

function failNotUnix(syscall: string, errno: number): never {
  if (errno === Errno.ENOTSOCK || errno === Errno.ENOPROTOOPT || errno === Errno.EOPNOTSUPP) {
    throw errnoError(syscall, errno, ErrorCode.NOT_UNIX_SOCKET, 'not a UNIX domain socket');
  }
  throw errnoError(syscall, errno, ErrorCode.PEER_UNAVAILABLE, 'peer credentials unreadable');
}

/** SO_PEERCRED: pid, uid and gid of the peer, translated into our namespaces. */
export function peerCred(fd: number): PeerCred {
  const c = libc();
  lenBuf.writeUInt32LE(12, 0);
  if (c.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, credBuf, lenBuf) !== 0) failNotUnix('getsockopt(SO_PEERCRED)', c.errno());
  return { pid: credBuf.readInt32LE(0), uid: credBuf.readUInt32LE(4), gid: credBuf.readUInt32LE(8) };
}

/** SO_PEERGROUPS: the peer's supplementary groups, from the kernel. Undefined before Linux 4.13. */
export function peerGroups(fd: number): number[] | undefined {
  const c = libc();
  let size = 64 * 4;
  for (let attempt = 0; attempt < 4; attempt++) {
    const buf = Buffer.alloc(size);
    lenBuf.writeUInt32LE(size, 0);
    if (c.getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, buf, lenBuf) === 0) {
      const n = lenBuf.readUInt32LE(0) / 4;
      const out = new Array<number>(n);
      for (let i = 0; i < n; i++) out[i] = buf.readUInt32LE(i * 4);
      return out;
    }
    const errno = c.errno();
    // ERANGE reports the size needed in the length argument.
    if (errno === Errno.ERANGE) {
      size = Math.max(lenBuf.readUInt32LE(0), size * 2);
      continue;
    }
    if (errno === Errno.ENOPROTOOPT) return undefined;
    failNotUnix('getsockopt(SO_PEERGROUPS)', errno);
  }
  throw errnoError('getsockopt(SO_PEERGROUPS)', Errno.ERANGE, ErrorCode.PEER_UNAVAILABLE, 'group list keeps growing');
}

/** SO_PEERSEC: the peer's security label (SELinux context, AppArmor profile); undefined without an LSM that provides one. */
export function peerSecurityLabel(fd: number): string | undefined {
  const c = libc();
  let size = 256;
  for (let attempt = 0; attempt < 4; attempt++) {
    const buf = Buffer.alloc(size);
    lenBuf.writeUInt32LE(size, 0);
    if (c.getsockopt(fd, SOL_SOCKET, SO_PEERSEC, buf, lenBuf) === 0) {
      let len = lenBuf.readUInt32LE(0);
      while (len > 0 && buf[len - 1] === 0) len--;
      return len === 0 ? undefined : buf.toString('utf8', 0, len);
    }
    const errno = c.errno();
    if (errno === Errno.ERANGE) {
      size = Math.max(lenBuf.readUInt32LE(0), size * 2);
      continue;
    }
    // ENOPROTOOPT: no LSM gives sockets a label here. That is "no label", not an error.
    if (errno === Errno.ENOPROTOOPT) return undefined;
    failNotUnix('getsockopt(SO_PEERSEC)', errno);
  }
  throw errnoError('getsockopt(SO_PEERSEC)', Errno.ERANGE, ErrorCode.PEER_UNAVAILABLE, 'label keeps growing');
}

/**
 * A sockaddr_un for `name` (its bytes, already checked to fit sun_path): a path ends with a
 * NUL; an abstract name starts with one and has no end marker, its length is the address
 * length (as systemd and most programs bind them).
 */
export function sockaddrUn(name: Buffer, abstract: boolean): Buffer {
  const addr = Buffer.alloc(2 + 1 + name.length);
  addr.writeUInt16LE(1, 0); // AF_UNIX
  name.copy(addr, abstract ? 3 : 2);
  return addr;
}

/** A UNIX socket address: a path, an abstract name (shown as `@name`), or unnamed. */
export interface UnixAddress {
  kind: 'path' | 'abstract' | 'unnamed';
  /** The path, or `@name` for an abstract socket; undefined when unnamed. */
  path?: string;
}

const addrBuf = Buffer.alloc(110);
const UNNAMED: UnixAddress = Object.freeze({ kind: 'unnamed' });

function decodeAddress(len: number): UnixAddress {
  if (len <= 2) return UNNAMED;
  if (addrBuf[2] === 0) {
    // libuv before 1.46 (Node 20) binds abstract names padded with NULs to the full
    // sun_path; trim them so the name reads as the program wrote it.
    let end = len;
    while (end > 3 && addrBuf[end - 1] === 0) end--;
    return { kind: 'abstract', path: `@${addrBuf.toString('latin1', 3, end)}` };
  }
  let end = 2;
  while (end < len && addrBuf[end] !== 0) end++;
  return { kind: 'path', path: addrBuf.toString('utf8', 2, end) };
}

/** getsockname(): the address this end is bound to (the listening path, on an accepted socket). */
export function localAddress(fd: number): UnixAddress {
  const c = libc();
  lenBuf.writeUInt32LE(110, 0);
  if (c.getsockname(fd, addrBuf, lenBuf) !== 0) failNotUnix('getsockname', c.errno());
  if (addrBuf.readUInt16LE(0) !== 1) throw new SecpolicyError(ErrorCode.NOT_UNIX_SOCKET, 'the socket is not a UNIX domain socket');
  return decodeAddress(Math.min(lenBuf.readUInt32LE(0), 110));
}

/** getpeername(): the address of the other end (the server's path, on a client socket). */
export function remoteAddress(fd: number): UnixAddress {
  const c = libc();
  lenBuf.writeUInt32LE(110, 0);
  if (c.getpeername(fd, addrBuf, lenBuf) !== 0) failNotUnix('getpeername', c.errno());
  if (addrBuf.readUInt16LE(0) !== 1) throw new SecpolicyError(ErrorCode.NOT_UNIX_SOCKET, 'the socket is not a UNIX domain socket');
  return decodeAddress(Math.min(lenBuf.readUInt32LE(0), 110));
}

/** close(2) for fds the package owns (pidfds). */
export function closeFd(fd: number): void {
  libc().close(fd);
}
