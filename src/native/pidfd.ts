/**
 * Process file descriptors: a pidfd refers to one process for its whole life, so a pid
 * that is recycled after the process exits can never be mistaken for it. Used to prove
 * that what /proc/PID says still belongs to the peer that connected.
 */
import { ErrorCode } from '../errors.js';
import { Errno, errnoError, libc } from './libc.js';

// Same numbers on x86-64 and arm64 (the unified syscall table since Linux 5.x).
const SYS_PIDFD_OPEN = 434;
const SOL_SOCKET = 1;
const SO_PEERPIDFD = 77;

const intBuf = Buffer.alloc(4);
const lenBuf = Buffer.alloc(4);

/**
 * SO_PEERPIDFD of a connected socket, telling apart a kernel without the option
 * (`unsupported`: fall back to pidfd_open) from a peer that is already gone (`exited`:
 * falling back to its pid could pin an unrelated process).
 */
export function socketPeerPidfd(fd: number): number | 'unsupported' | 'exited' {
  const c = libc();
  lenBuf.writeUInt32LE(4, 0);
  if (c.getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, intBuf, lenBuf) === 0) return intBuf.readInt32LE(0);
  const errno = c.errno();
  if (errno === Errno.ENOPROTOOPT || errno === Errno.EOPNOTSUPP) return 'unsupported';
  // ESRCH / EINVAL: the peer's process has no task any more (or never had one we can see).
  if (errno === Errno.ESRCH || errno === Errno.EINVAL) return 'exited';
  throw errnoError('getsockopt(SO_PEERPIDFD)', errno, ErrorCode.PEER_UNAVAILABLE);
}

/** pidfd_open(2) (Linux 5.3+): a pidfd for `pid`, or why there is none. */
export function pidfdOpen(pid: number): number | 'unsupported' | 'exited' {
  const c = libc();
  const fd = Number(c.syscall3(SYS_PIDFD_OPEN, pid, 0, 0));
  if (fd >= 0) return fd;
  const errno = c.errno();
  if (errno === Errno.ENOSYS || errno === Errno.EPERM) return 'unsupported';
  if (errno === Errno.ESRCH || errno === Errno.EINVAL) return 'exited';
  throw errnoError('pidfd_open', errno, ErrorCode.NATIVE);
}

const POLLIN = 0x0001;
// struct pollfd { int fd; short events; short revents; }: events is always POLLIN.
const pollBuf = Buffer.alloc(8);
pollBuf.writeInt16LE(POLLIN, 4);

/**
 * Whether the process behind a pidfd is still alive: the kernel makes a pidfd readable
 * (POLLIN) once its process has exited, before the parent reaps it. A zombie still takes
 * signals (pidfd_send_signal(0) succeeds on it) and still has /proc entries, some of them
 * rewritten on exit (its cgroup reads as the root), so a zombie counts as gone.
 */
export function pidfdAlive(pidfd: number): boolean {
  const c = libc();
  pollBuf.writeInt32LE(pidfd, 0);
  pollBuf.writeInt16LE(0, 6);
  let n = Number(c.poll(pollBuf, 1, 0));
  // poll() is never restarted after a signal handler ran (signal(7)): a signal that arrives
  // during it (a profiler's SIGPROF, SIGCHLD) says nothing about the process. Ask again.
  for (let tries = 0; n < 0 && c.errno() === Errno.EINTR && tries < 100; tries++) n = Number(c.poll(pollBuf, 1, 0));
  // An error (EBADF: not a pidfd any more) proves nothing: not alive.
  if (n < 0) return false;
  return n === 0 || (pollBuf.readInt16LE(6) & POLLIN) === 0;
}
