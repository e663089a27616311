/** connect(): a client connection whose server is verified before it is handed over. */
import net from 'node:net';
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import { DEFAULT_TIMEOUT, Policy, type Decision } from '../policy/policy.js';
import * as v from '../policy/validate.js';
import { publishDenied } from './channels.js';
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
}

/**
 * Connects to a UNIX socket and verifies the server against `options.policy` before
 * resolving with the socket, so that no byte is sent to a server that squats the path.
 * Rejects with `ERR_SECPOLICY_DENIED` carrying `.decision` when the server fails the
 * policy, `ERR_SECPOLICY_CONNECT` when the socket cannot be reached, and
 * `ERR_SECPOLICY_TIMEOUT` when connecting and verifying take longer than `timeout`.
 * `peerOf(socket)` then gives the verified server.
 */
export function connect(options: ConnectOptions): Promise<net.Socket> {
  const o = v.options<ConnectOptions>('options', options);
  const path = o.path;
  const abstract = typeof path === 'string' && path.startsWith('\0') && path.length > 1;
  if (!abstract && !v.isName(path)) throw invalidArg('options.path', 'a socket path (or "\\0name" for an abstract socket)', path);
  if (!(o.policy instanceof Policy)) throw invalidArg('options.policy', 'a Policy', o.policy);
  const policy = o.policy;
  const timeout = v.timeout('options.timeout', o.timeout, DEFAULT_TIMEOUT);
  const signal = v.signal('options.signal', o.signal);
  if (signal?.aborted) return Promise.reject(aborted());

  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeout;
    const controller = new AbortController();
    const socket = net.connect({ path });
    let connected = false;
    let settled = false;

    // The error listener stays on a failed socket: an error still queued must not go unhandled.
    const cleanup = (): void => {
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    const fail = (error: SecpolicyError): void => {
      if (settled) return;
      cleanup();
      controller.abort();
      socket.destroy();
      if (error.code === ErrorCode.DENIED) publishDenied({ source: 'connect', reason: error.decision as Decision, socket });
      reject(error);
    };
    const onError = (error: NodeJS.ErrnoException): void => {
      // Once connected, a failing socket makes apply() reject; that error says more.
      if (!connected) fail(connectError(path, error));
    };
    const onAbort = (): void => fail(aborted());
    const timer = setTimeout(() => fail(new SecpolicyError(ErrorCode.TIMEOUT, `connecting to and verifying ${display(path)} took longer than ${timeout} ms`, { path })), timeout);

    socket.on('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      connected = true;
      policy
        .apply(socket, {
          side: 'client',
          timeout: Math.max(1, deadline - Date.now()),
          signal: controller.signal,
          socketPath: display(path),
        })
        .then(
          (decision) => {
            if (settled) return;
            if (!decision.allowed) return fail(deniedError(path, decision));
            if (socket.destroyed) return fail(new SecpolicyError(ErrorCode.PEER_UNAVAILABLE, `${display(path)} closed the connection during verification`, { path }));
            cleanup();
            socket.off('error', onError);
            rememberPeer(socket, decision.peer);
            resolve(socket);
          },
          (error: unknown) => fail(asError(error)),
        );
    });
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
  return new SecpolicyError(ErrorCode.CONNECT, `cannot connect to ${display(path)}: ${cause.code ?? cause.message}`, {
    cause,
    path,
    ...(typeof cause.errno === 'number' && { errno: Math.abs(cause.errno) }),
    ...(cause.syscall !== undefined && { syscall: cause.syscall }),
  });
}
