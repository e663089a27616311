/** guard(): verification in front of an existing server (net, http, express, fastify). */
import type { Server } from 'node:net';
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import { Policy } from '../policy/policy.js';
import * as v from '../policy/validate.js';
import { installVerifier, verifierConfig, type VerifyOptions } from './verify.js';

/** Options of {@link guard}. */
export type GuardOptions = VerifyOptions;

/**
 * Verifies every connection of an existing server before any of its `'connection'`
 * listeners run: for an `http.Server` (also express's and fastify's) that is before the
 * first byte is parsed. Denied sockets are destroyed and the server emits `'denied'` with
 * `(decision | error, socket)`. A policy with a challenge is refused with
 * `ERR_SECPOLICY_ASYNC_RULE`: the challenge bytes would reach a protocol that does not
 * expect them. Returns the server.
 */
export function guard<S extends Server>(server: S, policy: Policy, options?: GuardOptions): S {
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
  installVerifier(server, verifierConfig(policy, v.options<GuardOptions>('options', options), 'guard', 'options'));
  return server;
}
