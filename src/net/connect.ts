/** connect(): a client connection whose server is verified before it is handed over. */
import { statSync, type Stats } from 'node:fs';
import * as net from 'node:net';
import { ErrorCode, SecpolicyError, invalidArg, isSecpolicyError } from '../errors.js';
import { DEFAULT_TIMEOUT, Policy, type Decision } from '../policy/index.js';
import * as v from '../validate.js';
import { publishDenied } from '../diagnostics.js';
import { rememberPeer } from './registry.js';
import { asError } from './verify.js';

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** The socket file to connect to, or `\0name` for an abstract socket. */
  path: string;
  /** The policy the *server* must pass (its uid, program, ... as of its listen()). */
  policy: Policy;
  /** Bound on connecting and verifying together, in ms. @default 5000 */
  timeout?: number;
  /** Aborts the attempt (rejects with `ERR_SECPOLICY_ABORTED`). */
  signal?: AbortSignal;
  /** Largest challenge payload accepted from the server, in bytes. @default 65536 */
  maxPayload?: number;
}

/**
 * Connects to a UNIX socket and verifies the server against `options.policy` before
 * resolving with the socket, so that no byte is sent to a server that squats the path.
 * Rejects with `ERR_SECPOLICY_DENIED` carrying `.decision` when the server fails the
 * policy, `ERR_SECPOLICY_CONNECT` when the socket cannot be reached, and
 * `ERR_SECPOLICY_TIMEOUT` when connecting and verifying take longer than `timeout`.
 * `peerOf(socket)` then gives the verified server.
 */
export async function connect(options: ConnectOptions): Promise<net.Socket> {
  return connectWith(options);
}

/** @internal Options of the socket that {@link connectWith} and {@link openSocket} open. */
export interface SocketOptions {
  allowHalfOpen?: boolean;
  highWaterMark?: number;
  /** How long a full accept queue is tried again, in ms, before ERR_SECPOLICY_TIMEOUT. @default until the signal ends it */
  busyTimeout?: number;
}

/** @internal connect() opening its socket with `socketOptions` (the proxy's half-open upstream). */
export async function connectWith(options: ConnectOptions, socketOptions: SocketOptions = {}): Promise<net.Socket> {
  const o = v.options<ConnectOptions>('options', options);
  const path = o.path;
  const abstract = typeof path === 'string' && path.startsWith('\0') && path.length > 1;
  if (!abstract && !v.isName(path)) throw invalidArg('options.path', 'a socket path (or "\\0name" for an abstract socket)', path);
  if (!(o.policy instanceof Policy)) throw invalidArg('options.policy', 'a Policy', o.policy);
  const policy = o.policy.snapshot();
  const timeout = v.timeout('options.timeout', o.timeout, DEFAULT_TIMEOUT);
  const signal = v.signal('options.signal', o.signal);
  if (signal?.aborted) throw aborted();

  // One signal ends everything in progress: the caller's abort or our deadline.
  const deadline = Date.now() + timeout;
  const controller = new AbortController();
  const timer = setTimeout(
    () =>
      controller.abort(
        new SecpolicyError(ErrorCode.TIMEOUT, `connecting to and verifying ${display(path)} took longer than ${timeout} ms`, { path }),
      ),
    timeout,
  );
  const onAbort = (): void => controller.abort(aborted());
  signal?.addEventListener('abort', onAbort, { once: true });
  let socket: net.Socket | undefined;
  try {
    socket = await openSocket(path, controller.signal, socketOptions);
    const decision = await untilAborted(
      policy.apply(socket, {
        side: 'client',
        timeout: Math.max(1, deadline - Date.now()),
        signal: controller.signal,
        socketPath: display(path),
        ...(o.maxPayload !== undefined && { maxPayload: o.maxPayload }),
      }),
      controller.signal,
    );
    if (!decision.allowed) throw deniedError(path, decision);
    if (socket.destroyed)
      throw new SecpolicyError(ErrorCode.PEER_UNAVAILABLE, `${display(path)} closed the connection during verification`, { path });
    rememberPeer(socket, decision.peer);
    socket.off('error', ignore);
    return socket;
  } catch (e) {
    const reason: unknown = controller.signal.reason;
    const error = controller.signal.aborted && isSecpolicyError(reason) ? reason : asError(e);
    // The error guard stays on a failed socket: an error still queued must not go unhandled.
    socket?.destroy();
    if (socket && error.code === ErrorCode.DENIED) publishDenied({ source: 'connect', reason: error.decision as Decision, socket });
    throw error;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

const ignore = (): void => {};
const MAX_RETRY_DELAY = 100;

/**
 * @internal A connected socket (`\0name` for Node's abstract names). A full accept queue
 * (EAGAIN: the server is busy, not gone) is tried again with a growing pause until the
 * signal ends the attempt, rejecting with its reason; other errors reject with
 * ERR_SECPOLICY_CONNECT. The socket keeps an error guard.
 */
export function openSocket(path: string, signal: AbortSignal, socketOptions: SocketOptions = {}): Promise<net.Socket> {
  const { busyTimeout, ...netOptions } = socketOptions;
  return new Promise((resolve, reject) => {
    let delay = 5;
    let busySince = 0;
    const attempt = (): void => {
      if (signal.aborted) return reject(signal.reason);
      const socket = net.connect({ ...netOptions, path } as net.NetConnectOpts);
      const onAbort = (): void => {
        socket.destroy();
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      socket.once('connect', () => {
        signal.removeEventListener('abort', onAbort);
        socket.off('error', onError).on('error', ignore);
        resolve(socket);
      });
      const onError = (error: NodeJS.ErrnoException): void => {
        signal.removeEventListener('abort', onAbort);
        if (error.code !== 'EAGAIN') return reject(connectError(path, error));
        const now = Date.now();
        if (busySince === 0) busySince = now;
        if (busyTimeout !== undefined && now - busySince + delay > busyTimeout) {
          return reject(
            new SecpolicyError(ErrorCode.TIMEOUT, `${display(path)} stayed busy (its accept queue full) for ${busyTimeout} ms`, { path }),
          );
        }
        setTimeout(attempt, delay);
        delay = Math.min(delay * 2, MAX_RETRY_DELAY);
      };
      socket.once('error', onError);
    };
    attempt();
  });
}

/** `promise`, or the signal's reason as soon as it aborts (a callback may never settle). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

function display(path: string): string {
  return path.startsWith('\0') ? `@${path.slice(1)}` : path;
}

function aborted(): SecpolicyError {
  return new SecpolicyError(ErrorCode.ABORTED, 'connect() was aborted');
}

function deniedError(path: string, decision: Decision): SecpolicyError {
  const why = decision.failures.map((f) => f.message).join('; ');
  return new SecpolicyError(ErrorCode.DENIED, `the server at ${display(path)} failed the policy: ${why}`, { decision, path });
}

function connectError(path: string, cause: NodeJS.ErrnoException): SecpolicyError {
  // The kernel refuses a connection to a file that is not a socket as if nobody listened.
  const notSocket = cause.code === 'ECONNREFUSED' && !path.startsWith('\0') ? notASocket(path) : undefined;
  const why = notSocket ? `it is ${notSocket}, not a socket` : (cause.code ?? cause.message);
  return new SecpolicyError(ErrorCode.CONNECT, `cannot connect to ${display(path)}: ${why}`, {
    // The errno (ECONNREFUSED) would only repeat, misleadingly, what the message says.
    ...(!notSocket && { cause }),
    path,
    ...(typeof cause.errno === 'number' && { errno: Math.abs(cause.errno) }),
    ...(cause.syscall !== undefined && { syscall: cause.syscall }),
  });
}

/** What is at `path` when it is not a socket (`a regular file`, `a directory`, ...), else undefined. */
function notASocket(path: string): string | undefined {
  let s: Stats;
  try {
    s = statSync(path);
  } catch {
    return undefined;
  }
  if (s.isSocket()) return undefined;
  if (s.isFile()) return 'a regular file';
  if (s.isDirectory()) return 'a directory';
  if (s.isFIFO()) return 'a FIFO';
  if (s.isCharacterDevice() || s.isBlockDevice()) return 'a device';
  return 'a special file';
}
