/**
 * The verifier shared by createServer() and guard(): it takes over the server's
 * `'connection'` event, so that every listener (the application's, and http's own
 * parser setup) runs only for a socket whose peer passed the policy. A denied socket is
 * destroyed before anyone else sees it.
 */
import type { Server, Socket } from 'node:net';
import { ErrorCode, SecpolicyError, invalidArg, isSecpolicyError } from '../errors.js';
import { maxPayloadOption } from '../challenge/index.js';
import { Peer } from '../identity/index.js';
import { SERVER_SIDE, knownPeer, type ApplyOptions, type Decision, type InternalApplyOptions, type Policy } from '../policy/index.js';
import * as v from '../validate.js';
import { publishDenied, type DeniedMessage } from '../diagnostics.js';
import { UidLimiter } from './limits.js';
import { rememberPeer } from './registry.js';

/** Default bound on verifying one connection, in ms. */
export const DEFAULT_HANDSHAKE_TIMEOUT = 5000;

/** Options shared by createServer() and guard(). */
export interface VerifyOptions {
  /**
   * Bound on verifying one connection (identity rules, callbacks and any challenge), in
   * ms. A peer that has not passed by then is cut off and reported as denied.
   * @default 5000
   */
  handshakeTimeout?: number;
  /** Largest challenge payload accepted from a peer, in bytes. @default 65536 */
  maxPayload?: number;
  /**
   * Connections one uid may hold at once (those still being verified included). A peer
   * over the limit is denied with `Result.LIMIT`. No limit by default.
   */
  maxConnectionsPerUid?: number;
}

/** @internal What a verifier needs, after validation. */
export interface VerifierConfig {
  policy: Policy;
  handshakeTimeout: number;
  maxPayload: number;
  limiter: UidLimiter | undefined;
  source: DeniedMessage['source'];
  /** How a denied socket is closed. @default destroyed at once */
  refuse?: (socket: Socket, reason: Decision | SecpolicyError) => void;
}

const GUARDED = Symbol.for('secpolicy.guarded');

/** @internal Validates the options shared by createServer() and guard(). */
export function verifierConfig(
  policy: Policy,
  options: Partial<VerifyOptions>,
  source: VerifierConfig['source'],
  where: string,
): VerifierConfig {
  const handshakeTimeout = v.timeout(`${where}.handshakeTimeout`, options.handshakeTimeout, DEFAULT_HANDSHAKE_TIMEOUT);
  const max = options.maxConnectionsPerUid;
  if (max !== undefined && (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 1)) {
    throw invalidArg(`${where}.maxConnectionsPerUid`, 'a positive integer', max);
  }
  const maxPayload = maxPayloadOption(`${where}.maxPayload`, options.maxPayload);
  // A frozen snapshot: rules added to the policy later never reach this verifier.
  return { policy: policy.snapshot(), handshakeTimeout, maxPayload, limiter: max === undefined ? undefined : new UidLimiter(max), source };
}

/** @internal True when the policy can be decided without waiting (no challenge, no callback). */
export function isSyncPolicy(policy: Policy): boolean {
  // Strict mode scans every fd on the host: apply() makes that scan off the event loop.
  return !policy.hasChallenge && !policy.strict && !policy.rules.some((rule) => rule.async === true);
}

/** @internal Installs the verifier on a server; a server can be guarded once. */
export function installVerifier(server: Server, config: VerifierConfig): void {
  if ((server as unknown as Record<symbol, unknown>)[GUARDED]) {
    throw invalidArg('server', 'a server that is not already guarded', server);
  }
  Object.defineProperty(server, GUARDED, { value: true });
  const emit = server.emit as (this: Server, event: string | symbol, ...args: unknown[]) => boolean;
  const { policy, limiter, source } = config;
  const refuse = config.refuse ?? ((socket: Socket) => socket.destroy());
  // The policy is a frozen snapshot: whether it can be decided at once is known here, not per connection.
  const sync = isSyncPolicy(policy);

  const allow = (socket: Socket, peer: Peer): void => {
    rememberPeer(socket, peer);
    emit.call(server, 'connection', socket);
  };
  const deny = (socket: Socket, reason: Decision | SecpolicyError): void => {
    refuse(socket, reason);
    publishDenied({ source, reason, socket });
    emit.call(server, 'denied', reason, socket);
  };

  const verify = (socket: Socket): void => {
    let outcome: Decision | SecpolicyError | undefined;
    try {
      let options: ApplyOptions & InternalApplyOptions = SERVER_SIDE;
      if (limiter) {
        // The limiter's Peer is the one the policy then checks: credentials are read once.
        const peer = new Peer(socket, { side: 'server' });
        outcome = limiter.admit(socket, peer);
        options = { side: 'server', [knownPeer]: peer };
      }
      if (outcome === undefined) {
        if (!sync) return verifyAsync(socket, options, config, allow, deny);
        // Fast path: decided before this emit returns, so no byte is read meanwhile.
        outcome = policy.applySync(socket, options);
      }
    } catch (error) {
      outcome = asError(error);
    }
    // Outside the try: what the application's listeners throw is theirs, not a denial.
    if ('allowed' in outcome && outcome.allowed) allow(socket, outcome.peer);
    else deny(socket, outcome);
  };

  server.emit = function guardedEmit(this: Server, event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'connection') return emit.call(this, event, ...args);
    verify(args[0] as Socket);
    return true;
  } as typeof server.emit;
}

/** Callbacks and challenges: awaited, bounded by the handshake timeout. */
function verifyAsync(
  socket: Socket,
  options: ApplyOptions & InternalApplyOptions,
  config: VerifierConfig,
  allow: (socket: Socket, peer: Peer) => void,
  deny: (socket: Socket, reason: Decision | SecpolicyError) => void,
): void {
  const controller = new AbortController();
  let settled = false;
  // A peer that resets mid-handshake must not crash the server with an unhandled 'error'.
  const swallow = (): void => {};
  const settle = (outcome: Decision | SecpolicyError): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    socket.off('error', swallow);
    socket.off('close', onClose);
    if (!('allowed' in outcome) || !outcome.allowed) return deny(socket, outcome);
    if (socket.destroyed) return deny(socket, closedDuringVerification());
    allow(socket, outcome.peer);
  };
  const onClose = (): void => settle(closedDuringVerification());
  const timer = setTimeout(() => {
    controller.abort();
    settle(new SecpolicyError(ErrorCode.TIMEOUT, `the peer was not verified within the handshake timeout (${config.handshakeTimeout} ms)`));
  }, config.handshakeTimeout);
  socket.on('error', swallow);
  socket.once('close', onClose);
  // A listener that throws while settle() runs the application's code must surface as it
  // would from a plain net.Server ('uncaughtException'), not as a rejected promise.
  const settleOutside = (outcome: Decision | SecpolicyError): void => {
    try {
      settle(outcome);
    } catch (error) {
      process.nextTick(() => {
        throw error;
      });
    }
  };
  config.policy
    .apply(socket, { ...options, timeout: config.handshakeTimeout, maxPayload: config.maxPayload, signal: controller.signal })
    .then(settleOutside, (error: unknown) => settleOutside(asError(error)));
}

const closedDuringVerification = (): SecpolicyError =>
  new SecpolicyError(ErrorCode.PEER_UNAVAILABLE, 'the peer closed the connection during verification');

/** @internal Any failure of a verification as a SecpolicyError (fail closed, never crash). */
export function asError(error: unknown): SecpolicyError {
  if (isSecpolicyError(error)) return error;
  return new SecpolicyError(ErrorCode.PEER_UNAVAILABLE, `verification failed: ${(error as Error)?.message ?? String(error)}`, {
    cause: error,
  });
}
