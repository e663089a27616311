/** guard(): verification in front of an existing server (net, http, express, fastify). */
import type { Server, Socket } from 'node:net';
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import { Policy, type Decision } from '../policy/index.js';
import * as v from '../validate.js';
import type { DeniedEvents } from './server.js';
import { installVerifier, verifierConfig, type VerifyOptions } from './verify.js';

/** Options of {@link guard}. */
export interface GuardOptions extends VerifyOptions {
  /**
   * How a denied connection is closed. `'destroy'`: at once, without a byte (the peer sees
   * its connection closed, or reset when its request was already sent). `'http'`: with a
   * complete `HTTP/1.1 403 Forbidden` carrying a JSON body
   * `{ "message": "secpolicy: ...", "failures": [{ "rule", "message" }] }` and
   * `Connection: close`, for HTTP servers whose clients should see a status. Nothing the
   * peer sent is parsed either way.
   * @default 'destroy'
   */
  deny?: 'destroy' | 'http';
}

/** A server returned by {@link guard}: the same object, with the typed `'denied'` event. */
export type GuardedServer<S extends Server> = DeniedEvents & S;

/**
 * Verifies every connection of an existing server before any of its `'connection'`
 * listeners run: for an `http.Server` (also express's and fastify's) that is before the
 * first byte is parsed. Denied sockets are closed (see {@link GuardOptions.deny}) and the
 * server emits `'denied'` with `(decision | error, socket)`. A policy with a challenge is
 * refused with `ERR_SECPOLICY_ASYNC_RULE`: the challenge bytes would reach a protocol that
 * does not expect them. Returns the server.
 */
export function guard<S extends Server>(server: S, policy: Policy, options?: GuardOptions): GuardedServer<S> {
  if (
    typeof server !== 'object' ||
    server === null ||
    typeof (server as Server).listen !== 'function' ||
    typeof (server as Server).emit !== 'function'
  ) {
    throw invalidArg('server', 'a net.Server', server);
  }
  if (!(policy instanceof Policy)) throw invalidArg('policy', 'a Policy', policy);
  if (policy.hasChallenge) {
    throw new SecpolicyError(
      ErrorCode.ASYNC_RULE,
      'guard() cannot run a challenge on a server whose protocol does not speak it: use createServer()',
    );
  }
  const o = v.options<GuardOptions>('options', options);
  if (o.deny !== undefined && o.deny !== 'destroy' && o.deny !== 'http') throw invalidArg('options.deny', '"destroy" or "http"', o.deny);
  const config = verifierConfig(policy, o, 'guard', 'options');
  if (o.deny === 'http') config.refuse = (socket, reason) => forbidden(socket, reason, config.handshakeTimeout);
  installVerifier(server, config);
  return server as GuardedServer<S>;
}

// What a denied HTTP peer may still send while its 403 goes out; past it, it is cut.
const MAX_DRAINED = 64 * 1024;

/** @internal The 403 response to a denial: status, the reasons as JSON, no secrets. */
export function forbiddenResponse(reason: Decision | SecpolicyError): string {
  const body =
    'allowed' in reason
      ? {
          message: `secpolicy: denied: ${reason.failures.map((f) => f.message).join('; ')}`,
          failures: reason.failures.map((f) => ({ rule: f.rule, message: f.message })),
        }
      : { message: `secpolicy: connection refused: ${reason.code}`, failures: [] };
  const text = JSON.stringify(body);
  return (
    'HTTP/1.1 403 Forbidden\r\n' +
    'Content-Type: application/json\r\n' +
    `Content-Length: ${Buffer.byteLength(text)}\r\n` +
    'Connection: close\r\n' +
    '\r\n' +
    text
  );
}

/**
 * Answers a denied connection with a 403 and closes it. The request is never parsed: what
 * the peer sends is read and dropped (bounded in bytes and time), because closing a UNIX
 * socket with unread bytes resets the peer before it reads the response.
 */
function forbidden(socket: Socket, reason: Decision | SecpolicyError, timeout: number): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  let drained = 0;
  const timer = setTimeout(() => socket.destroy(), timeout);
  socket.on('error', () => socket.destroy());
  socket.once('close', () => clearTimeout(timer));
  socket.on('data', (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > MAX_DRAINED) socket.destroy();
  });
  // The peer has read the response and hung up (or half-closed): nothing more to wait for.
  socket.once('end', () => socket.destroy());
  socket.resume(); // also on a server made with pauseOnConnect
  socket.end(forbiddenResponse(reason));
}
