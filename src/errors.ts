/**
 * The one catalogue of secpolicy's errors. Every error the package throws or rejects
 * with is a {@link SecpolicyError} whose `code` is one of {@link ErrorCode}; match on the
 * code, never on the message. docs/errors.md documents each code, and a test keeps the
 * two in step.
 */

/** Stable error codes. */
export const ErrorCode = Object.freeze({
  /** The platform has no backend (only Linux is supported). */
  UNSUPPORTED_PLATFORM: 'ERR_SECPOLICY_UNSUPPORTED_PLATFORM',
  /** The socket is not a connected UNIX domain stream socket. */
  NOT_UNIX_SOCKET: 'ERR_SECPOLICY_NOT_UNIX_SOCKET',
  /** The peer's credentials could not be read (socket closed, no fd, kernel refused). */
  PEER_UNAVAILABLE: 'ERR_SECPOLICY_PEER_UNAVAILABLE',
  /** A policy with an asynchronous rule (a challenge) was applied synchronously. */
  ASYNC_RULE: 'ERR_SECPOLICY_ASYNC_RULE',
  /** An argument or option is invalid; the message names it. */
  INVALID_ARG: 'ERR_SECPOLICY_INVALID_ARG',
  /** A challenge frame was malformed, or the stream ended inside the exchange. */
  PROTOCOL: 'ERR_SECPOLICY_PROTOCOL',
  /** The handshake did not finish within its timeout. */
  TIMEOUT: 'ERR_SECPOLICY_TIMEOUT',
  /** The operation was aborted through an AbortSignal. */
  ABORTED: 'ERR_SECPOLICY_ABORTED',
  /** The peer failed verification; the error carries the Decision. */
  DENIED: 'ERR_SECPOLICY_DENIED',
  /** A socket path is unsafe to create, replace or use. */
  UNSAFE_PATH: 'ERR_SECPOLICY_UNSAFE_PATH',
  /** The address is in use by a live listener. */
  ADDRESS_IN_USE: 'ERR_SECPOLICY_ADDRESS_IN_USE',
  /** A policy file could not be read or is invalid; the message names field and line. */
  POLICY_FILE: 'ERR_SECPOLICY_POLICY_FILE',
  /** A key file is unsafe (permissions, owner, symlink, not a regular file) or too short. */
  KEY_FILE: 'ERR_SECPOLICY_KEY_FILE',
  /** A secret is too short or otherwise unusable. */
  WEAK_SECRET: 'ERR_SECPOLICY_WEAK_SECRET',
  /** A file that must not be overwritten already exists. */
  FILE_EXISTS: 'ERR_SECPOLICY_FILE_EXISTS',
  /** A call into the C library (libc) failed unexpectedly. */
  NATIVE: 'ERR_SECPOLICY_NATIVE',
  /** connect() could not reach the socket (missing, refused, not permitted); the errno error is the cause. */
  CONNECT: 'ERR_SECPOLICY_CONNECT',
  /** The sockets systemd passed (LISTEN_FDS) are missing, not UNIX stream listeners, or not the named one. */
  SOCKET_ACTIVATION: 'ERR_SECPOLICY_SOCKET_ACTIVATION',
  /** A readiness notification (NOTIFY_SOCKET) could not be sent. */
  NOTIFY: 'ERR_SECPOLICY_NOTIFY',
  /** A path (or a directory on it) does not exist (ENOENT). */
  NOT_FOUND: 'ERR_SECPOLICY_NOT_FOUND',
  /** The process may not use a path (EACCES, EPERM). */
  PERMISSION: 'ERR_SECPOLICY_PERMISSION',
  /** A worker thread of the library (digests, the holder scan, the splice relay) stopped with work waiting on it. */
  WORKER: 'ERR_SECPOLICY_WORKER',
} as const);

/** Any of the stable error codes. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const brand = Symbol.for('secpolicy.error');

/** Options of a {@link SecpolicyError}. */
export interface SecpolicyErrorOptions {
  /** The underlying error (an errno error, an FFI error, a parse error, ...). */
  cause?: unknown;
  /** Extra fields copied onto the error (e.g. `decision`, `errno`, `path`). */
  [key: string]: unknown;
}

/** The error type of the package: always carries a stable `code`. */
export class SecpolicyError extends Error {
  /** A stable `ERR_SECPOLICY_*` code. */
  readonly code: ErrorCode;
  declare cause?: unknown;
  /** Set on `ERR_SECPOLICY_DENIED`: the Decision that denied the peer. */
  declare decision?: unknown;
  /** Set where the failure came from a system call. */
  declare errno?: number;
  declare syscall?: string;
  declare path?: string;

  constructor(code: ErrorCode, message: string, options?: SecpolicyErrorOptions) {
    super(message, options && 'cause' in options ? { cause: options.cause } : undefined);
    this.name = 'SecpolicyError';
    this.code = code;
    if (options) {
      for (const [key, value] of Object.entries(options)) {
        if (key !== 'cause') (this as Record<string, unknown>)[key] = value;
      }
    }
    Object.defineProperty(this, brand, { value: true });
  }
}

/**
 * True for a SecpolicyError, also one made by another copy of this package (the check
 * uses a registered symbol, not `instanceof`).
 */
export function isSecpolicyError(value: unknown): value is SecpolicyError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
}

/** Shorthand for an `ERR_SECPOLICY_INVALID_ARG` naming the argument. */
export function invalidArg(name: string, expected: string, actual: unknown): SecpolicyError {
  return new SecpolicyError(ErrorCode.INVALID_ARG, `The "${name}" argument must be ${expected}. Received ${describe(actual)}`, {
    argument: name,
  });
}

/** A short, safe rendering of a value for messages (never prints secrets' content). */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (typeof value === 'string') return value.length > 60 ? `a string of length ${value.length}` : JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return `${typeof value} ${String(value)}`;
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (value instanceof Uint8Array) return `a ${value.constructor.name} of length ${value.length}`;
  return `an instance of ${(value as object).constructor?.name ?? 'Object'}`;
}
