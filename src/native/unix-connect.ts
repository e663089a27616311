/**
 * connect(2) to an abstract UNIX socket with the address length its name really has.
 * Node pads abstract names to the whole sun_path (108 bytes), so `net.connect('\0name')`
 * reaches only servers that padded theirs the same way (other Node processes), never the
 * `@name` that ss, the audit, systemd, Python or C servers bind.
 */
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import { errnoName, libc } from './libc.js';
import { sockaddrUn } from './socket.js';

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SUN_PATH = 108;

/**
 * A connected, non-blocking stream socket to the abstract name (without the leading NUL
 * or `@`), as a raw fd the caller owns (hand it to `new net.Socket({ fd })`). Names are
 * bytes; a string is taken as latin1, as the audit decodes them. Throws
 * ERR_SECPOLICY_CONNECT carrying `errno` (ECONNREFUSED when nobody listens on that name,
 * EAGAIN when its backlog is full).
 */
export function connectAbstract(name: string): number {
  const bytes = Buffer.from(name, 'latin1');
  if (bytes.length === 0 || bytes.length > SUN_PATH - 1) throw invalidArg('name', `an abstract name of 1 to ${SUN_PATH - 1} bytes`, name);
  const c = libc();
  const addr = sockaddrUn(bytes, true);
  const fd = c.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) throw connectError(name, 'socket', c.errno());
  // A UNIX stream connect never returns EINPROGRESS: it completes or fails at once.
  if (c.connect(fd, addr, addr.length) !== 0) {
    const errno = c.errno();
    c.close(fd);
    throw connectError(name, 'connect', errno);
  }
  return fd;
}

function connectError(name: string, syscall: string, errno: number): SecpolicyError {
  const code = errnoName(errno);
  return new SecpolicyError(ErrorCode.CONNECT, `cannot connect to @${name}: ${code}`, {
    errno,
    syscall,
    path: `@${name}`,
    errnoName: code,
  });
}
