/**
 * What systemd's socket activation and readiness protocol need from libc: the kind of an
 * inherited fd, close-on-exec on it, our own pidfd's identity, and one datagram to the
 * supervisor's notification socket (Node's dgram module has no UNIX datagram sockets).
 */
import { fstatSync } from 'node:fs';
import { ErrorCode } from '../errors.js';
import { Errno, errnoError, libc, libcFunction } from './libc.js';
import { pidfdOpen } from './pidfd.js';
import { sockaddrUn } from './socket.js';

const SOL_SOCKET = 1;
const SO_TYPE = 3;
const SO_ACCEPTCONN = 30;
const SO_DOMAIN = 39;
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SOCK_NONBLOCK = 0o4000;
const MSG_DONTWAIT = 0x40;
const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;
const SUN_PATH = 108;

const intBuf = Buffer.alloc(4);
const lenBuf = Buffer.alloc(4);

function socketOption(fd: number, option: number): number | undefined {
  lenBuf.writeUInt32LE(4, 0);
  return libc().getsockopt(fd, SOL_SOCKET, option, intBuf, lenBuf) === 0 ? intBuf.readInt32LE(0) : undefined;
}

/**
 * Why an inherited fd is not a listening UNIX stream socket, or undefined when it is one.
 * Reads the kernel's view of the fd (fstat, SO_DOMAIN, SO_TYPE, SO_ACCEPTCONN).
 */
export function notUnixStreamListener(fd: number): string | undefined {
  let isSocket: boolean;
  try {
    isSocket = fstatSync(fd).isSocket();
  } catch (e) {
    return `fd ${fd} is not open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`;
  }
  if (!isSocket) return `fd ${fd} is not a socket`;
  const domain = socketOption(fd, SO_DOMAIN);
  if (domain !== AF_UNIX) return `fd ${fd} is not a UNIX domain socket (address family ${domain ?? 'unknown'})`;
  const type = socketOption(fd, SO_TYPE);
  if (type !== SOCK_STREAM) return `fd ${fd} is not a stream socket (type ${type ?? 'unknown'})`;
  if (socketOption(fd, SO_ACCEPTCONN) !== 1) return `fd ${fd} is not listening`;
  return undefined;
}

/** Marks an fd close-on-exec, so that children the process starts do not inherit it. */
export function setCloseOnExec(fd: number): void {
  const fcntl = libcFunction('int fcntl(int fd, int cmd, ...)');
  const flags = fcntl(fd, F_GETFD) as number;
  if (flags < 0 || (fcntl(fd, F_SETFD, 'int', flags | FD_CLOEXEC) as number) < 0) {
    throw errnoError('fcntl(F_SETFD)', libc().errno(), ErrorCode.NATIVE, `fd ${fd}`);
  }
}

/**
 * The identity systemd writes in LISTEN_PIDFDID: the inode number of a pidfd of this
 * process (unique for the boot on kernels whose pidfds live in pidfs), or undefined when
 * no pidfd can be had.
 */
export function ownPidfdId(): bigint | undefined {
  const fd = pidfdOpen(process.pid);
  if (typeof fd !== 'number') return undefined;
  try {
    return fstatSync(fd, { bigint: true }).ino;
  } finally {
    libc().close(fd);
  }
}

/**
 * The sockaddr_un of a datagram socket address: a path, or `@name` for the abstract
 * namespace (with the exact length of the name, as systemd binds it).
 */
function address(to: string): Buffer {
  const abstract = to.startsWith('@');
  const name = Buffer.from(abstract ? to.slice(1) : to);
  if (name.length === 0 || name.length > SUN_PATH - 1) throw errnoError('sendto', Errno.EINVAL, ErrorCode.INVALID_ARG, `address ${to}`);
  return sockaddrUn(name, abstract);
}

/**
 * Sends one datagram to a UNIX datagram socket (a path or `@abstract`) without ever
 * waiting: the socket is non-blocking and the send is MSG_DONTWAIT, so a receiver whose
 * queue is full (it stopped reading) gets nothing and the call fails with EAGAIN at once.
 * Throws on failure; the errno is the error's `errno`.
 */
export function sendDatagram(to: string, data: Buffer): void {
  const c = libc();
  const sendto = libcFunction('long sendto(int fd, void *buf, size_t len, int flags, void *addr, uint32_t addrlen)');
  const addr = address(to);
  const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0) as number;
  if (fd < 0) throw errnoError('socket', c.errno(), ErrorCode.NATIVE);
  try {
    if (Number(sendto(fd, data, data.length, MSG_DONTWAIT, addr, addr.length)) < 0) {
      throw errnoError('sendto', c.errno(), ErrorCode.NATIVE, to);
    }
  } finally {
    c.close(fd);
  }
}
