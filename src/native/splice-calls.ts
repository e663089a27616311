/**
 * The system calls of the zero-copy relay: epoll, eventfd, pipes, splice(2), shutdown and
 * fcntl, bound through koffi. Bound on their own (only the library is opened the way libc.ts
 * opens it) because the relay's worker thread loads them in its own isolate; every symbol is resolved up front, so a libc
 * or koffi without one of them is found at start, not in the middle of a connection.
 */
import { createRequire } from 'node:module';
import { openLibc, type Koffi, type NativeFn } from './libc.js';

const require = createRequire(import.meta.url);

/** The relay's system calls, each taking plain numbers and Buffers. */
export interface SpliceCalls {
  epoll_create1: NativeFn;
  epoll_ctl: NativeFn;
  epoll_wait: NativeFn;
  eventfd: NativeFn;
  pipe2: NativeFn;
  splice: NativeFn;
  read: NativeFn;
  write: NativeFn;
  shutdown: NativeFn;
  close: NativeFn;
  fcntl: NativeFn;
  socket: NativeFn;
  connect: NativeFn;
  errno: () => number;
}

let cached: SpliceCalls | undefined;

/** The bindings, loaded on first use; throws (with the reason) where one cannot be bound. */
export function spliceCalls(): SpliceCalls {
  if (cached) return cached;
  if (process.platform !== 'linux') throw new Error(`splice(2) is Linux only; this platform is ${process.platform}`);
  const koffi: Koffi = require('koffi');
  const lib: Koffi = openLibc(koffi);
  cached = {
    epoll_create1: lib.func('int epoll_create1(int flags)'),
    epoll_ctl: lib.func('int epoll_ctl(int epfd, int op, int fd, void *event)'),
    epoll_wait: lib.func('int epoll_wait(int epfd, void *events, int maxevents, int timeout)'),
    eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
    pipe2: lib.func('int pipe2(void *fds, int flags)'),
    // Offsets are always NULL here (sockets and pipes have none).
    splice: lib.func('long splice(int fd_in, void *off_in, int fd_out, void *off_out, size_t len, unsigned int flags)'),
    read: lib.func('long read(int fd, void *buf, size_t count)'),
    write: lib.func('long write(int fd, void *buf, size_t count)'),
    shutdown: lib.func('int shutdown(int fd, int how)'),
    close: lib.func('int close(int fd)'),
    fcntl: lib.func('int fcntl(int fd, int cmd, int arg)'),
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    connect: lib.func('int connect(int fd, void *addr, uint32_t length)'),
    errno: () => koffi.errno() as number,
  };
  return cached;
}

/** Constants of the relay (identical on x86-64 and arm64). */
export const K = Object.freeze({
  O_NONBLOCK: 0o4000,
  O_CLOEXEC: 0o2000000,
  EPOLL_CTL_ADD: 1,
  EPOLL_CTL_DEL: 2,
  EPOLLIN: 0x001,
  EPOLLOUT: 0x004,
  EPOLLERR: 0x008,
  EPOLLHUP: 0x010,
  EPOLLRDHUP: 0x2000,
  EPOLLET: 0x80000000,
  SPLICE_F_MOVE: 1,
  SPLICE_F_NONBLOCK: 2,
  F_DUPFD_CLOEXEC: 1030,
  F_SETPIPE_SZ: 1031,
  SHUT_WR: 1,
  EINTR: 4,
  EAGAIN: 11,
});

/**
 * struct epoll_event: { uint32 events; uint64 data }, packed (12 bytes) on x86-64 and
 * naturally aligned (16 bytes, data at 8) elsewhere.
 */
export const EPOLL_EVENT = process.arch === 'x64' ? { size: 12, data: 4 } : { size: 16, data: 8 };
