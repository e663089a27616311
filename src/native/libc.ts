/**
 * The one place that loads libc through koffi. Everything else in the package calls the
 * typed wrappers in this room. Loading is lazy so that importing the package on another
 * platform fails at the first call with ERR_SECPOLICY_UNSUPPORTED_PLATFORM, not at import.
 */
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { ErrorCode, SecpolicyError } from '../errors.js';

// koffi is CommonJS; createRequire keeps the import synchronous and lazy.
const require = createRequire(import.meta.url);

/** The koffi module type, kept loose: only this room touches it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Koffi = any;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type NativeFn = (...args: any[]) => any;

export interface Libc {
  koffi: Koffi;
  getsockopt: NativeFn;
  getsockname: NativeFn;
  getpeername: NativeFn;
  /** connect(2) with an exact address length: abstract names as other programs bind them (unix-connect.ts). */
  connect: NativeFn;
  getpwuid_r: NativeFn;
  getgrgid_r: NativeFn;
  getpwnam_r: NativeFn;
  getgrnam_r: NativeFn;
  syscall3: NativeFn;
  /** syscall(2) with four arguments (pidfd_send_signal). */
  syscall4: NativeFn;
  close: NativeFn;
  /** socket(2), send(2) and recv(2): netlink sock_diag queries (sock-diag.ts). */
  socket: NativeFn;
  send: NativeFn;
  recv: NativeFn;
  /** ioctl(2) with an integer argument (SIOCGSKNS) and setns(2): sock_diag in a peer's network namespace. */
  ioctl: NativeFn;
  setns: NativeFn;
  /** open(2), readlinkat(2) and getdents64 (through syscall): the holder scan's fd-table reads (fd-links.ts). */
  open: NativeFn;
  /** read(2): small /proc files into a preallocated buffer (proc-file.ts). */
  read: NativeFn;
  readlinkat: NativeFn;
  getdents64: NativeFn;
  /** poll(2): a pidfd turns readable once its process has exited, zombie or reaped (pidfd.ts). */
  poll: NativeFn;
  /** statx(2); null where libc lacks it (older musl). */
  statx: NativeFn | null;
  errno: () => number;
}

let cached: Libc | undefined;
let handle: Koffi | undefined;
const declared = new Map<string, NativeFn>();

/**
 * A libc function declared from its C prototype on first use (cached): for calls off the
 * hot paths, so that each native file can name what it needs beside its one use.
 */
export function libcFunction(prototype: string): NativeFn {
  let fn = declared.get(prototype);
  if (fn === undefined) {
    libc();
    fn = handle.func(prototype) as NativeFn;
    declared.set(prototype, fn);
  }
  return fn;
}
let loadError: SecpolicyError | undefined;

/** Throws ERR_SECPOLICY_UNSUPPORTED_PLATFORM unless this is Linux. */
export function assertPlatform(): void {
  if (process.platform !== 'linux') {
    throw new SecpolicyError(ErrorCode.UNSUPPORTED_PLATFORM, `secpolicy supports Linux only; this platform is ${process.platform}`);
  }
}

/** libc's functions, loaded on first use. */
export function libc(): Libc {
  if (cached) return cached;
  if (loadError) throw loadError;
  assertPlatform();
  try {
    cached = load();
    return cached;
  } catch (cause) {
    loadError = new SecpolicyError(ErrorCode.UNSUPPORTED_PLATFORM, `cannot load libc through koffi: ${(cause as Error).message}`, {
      cause,
    });
    throw loadError;
  }
}

/** @internal libc as a koffi library: glibc names its shared object libc.so.6, musl's loader answers to libc.so. */
export function openLibc(koffi: Koffi): Koffi {
  try {
    return koffi.load('libc.so.6');
  } catch {
    return koffi.load('libc.so');
  }
}

function load(): Libc {
  const koffi: Koffi = require('koffi');
  const lib = openLibc(koffi);
  handle = lib;
  const passwd = koffi.struct('secpolicy_passwd', {
    pw_name: 'const char *',
    pw_passwd: 'const char *',
    pw_uid: 'uint32_t',
    pw_gid: 'uint32_t',
    pw_gecos: 'const char *',
    pw_dir: 'const char *',
    pw_shell: 'const char *',
  });
  const group = koffi.struct('secpolicy_group', {
    gr_name: 'const char *',
    gr_passwd: 'const char *',
    gr_gid: 'uint32_t',
    gr_mem: 'void *',
  });
  // Hot paths take raw pointers (Buffers): koffi's marshalled out-parameters cost more.
  return {
    koffi,
    getsockopt: lib.func('int getsockopt(int fd, int level, int name, void *value, void *length)'),
    getsockname: lib.func('int getsockname(int fd, void *addr, void *length)'),
    getpeername: lib.func('int getpeername(int fd, void *addr, void *length)'),
    connect: lib.func('int connect(int fd, void *addr, uint32_t length)'),
    getpwuid_r: lib.func('getpwuid_r', 'int', [
      'uint32_t',
      koffi.out(koffi.pointer(passwd)),
      'void *',
      'size_t',
      koffi.out(koffi.pointer('void *')),
    ]),
    getpwnam_r: lib.func('getpwnam_r', 'int', [
      'const char *',
      koffi.out(koffi.pointer(passwd)),
      'void *',
      'size_t',
      koffi.out(koffi.pointer('void *')),
    ]),
    getgrgid_r: lib.func('getgrgid_r', 'int', [
      'uint32_t',
      koffi.out(koffi.pointer(group)),
      'void *',
      'size_t',
      koffi.out(koffi.pointer('void *')),
    ]),
    getgrnam_r: lib.func('getgrnam_r', 'int', [
      'const char *',
      koffi.out(koffi.pointer(group)),
      'void *',
      'size_t',
      koffi.out(koffi.pointer('void *')),
    ]),
    syscall3: lib.func('long syscall(long number, long a, long b, long c)'),
    syscall4: lib.func('long syscall(long number, long a, long b, long c, long d)'),
    close: lib.func('int close(int fd)'),
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    send: lib.func('long send(int fd, void *buf, size_t len, int flags)'),
    recv: lib.func('long recv(int fd, void *buf, size_t len, int flags)'),
    ioctl: lib.func('int ioctl(int fd, unsigned long request, long arg)'),
    setns: lib.func('int setns(int fd, int nstype)'),
    open: lib.func('int open(void *path, int flags)'),
    read: lib.func('long read(int fd, void *buf, size_t size)'),
    readlinkat: lib.func('long readlinkat(int dirfd, void *path, void *buf, size_t size)'),
    getdents64: lib.func('long syscall(long number, int fd, void *buf, size_t size)'),
    poll: lib.func('int poll(void *fds, unsigned long nfds, int timeout)'),
    statx: optional(() => lib.func('statx', 'int', ['int', 'void *', 'int', 'uint32_t', 'void *'])),
    errno: () => koffi.errno() as number,
  };
}

function optional(make: () => NativeFn): NativeFn | null {
  try {
    return make();
  } catch {
    return null;
  }
}

/** errno values used by the package (identical on x86-64 and arm64). */
export const Errno = Object.freeze({
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EINVAL: 22,
  ERANGE: 34,
  ENOSYS: 38,
  ENOTSOCK: 88,
  ENOPROTOOPT: 92,
  EOPNOTSUPP: 95,
  ENOTCONN: 107,
  EACCES: 13,
  ENOTDIR: 20,
  ENFILE: 23,
  EMFILE: 24,
  ENAMETOOLONG: 36,
  ELOOP: 40,
});

// Every name Node knows (the first of two for one value), and ours where we pick one (EAGAIN, EOPNOTSUPP).
const ERRNO_NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(osConstants.errno)) if (!ERRNO_NAMES.has(value)) ERRNO_NAMES.set(value, name);
for (const [name, value] of Object.entries(Errno)) ERRNO_NAMES.set(value, name);

/** The name of an errno for messages (`ENOENT`), or `errno N`. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

/** An ERR_SECPOLICY_NATIVE (or the given code) error for a failed system call. */
export function errnoError(syscall: string, errno: number, code: SecpolicyError['code'] = ErrorCode.NATIVE, detail = ''): SecpolicyError {
  return new SecpolicyError(code, `${syscall} failed: ${errnoName(errno)}${detail ? ` (${detail})` : ''}`, { errno, syscall });
}
