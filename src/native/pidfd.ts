/**
 * Process file descriptors: a pidfd refers to one process for its whole life, so a pid
 * that is recycled after the process exits can never be mistaken for it. Used to prove
 * that what /proc/PID says still belongs to the peer that connected.
 */
import { ErrorCode } from '../errors.js';
import { Errno, errnoError, libc } from './libc.js';

// Same numbers on x86-64 and arm64 (the unified syscall table since Linux 5.x).
const SYS_PIDFD_SEND_SIGNAL = 424;
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

/**
 * Whether the process behind a pidfd is still alive: pidfd_send_signal with signal 0
 * delivers nothing and fails with ESRCH once the process has exited. EPERM (another
 * user's process, and we are not root) still proves it alive.
 */
export function pidfdAlive(pidfd: number): boolean {
  const c = libc();
  if (Number(c.syscall4(SYS_PIDFD_SEND_SIGNAL, pidfd, 0, 0, 0)) === 0) return true;
  return c.errno() === Errno.EPERM;
}
