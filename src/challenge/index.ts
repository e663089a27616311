/** The challenge room's front door (framing, exchange, shared secret). */
import type { Socket } from 'node:net';
import { runExchange, type ExchangeResult, type ExchangeSteps } from './exchange.js';
import { maxPayloadOption } from './frame.js';
import { readKeyFile } from './key-file.js';
import { connectionBinding, sharedSecretSteps, type Role } from './shared-secret.js';

export {
  encodeFrame,
  FrameDecoder,
  FrameType,
  HEADER_SIZE,
  PROTOCOL_VERSION,
  SHARED_SECRET_VERSION,
  DEFAULT_MAX_PAYLOAD,
  MAX_MAX_PAYLOAD,
  maxPayloadOption,
  type Frame,
} from './frame.js';
export { runExchange, type ExchangeResult, type ExchangeSteps, type ExchangeBounds } from './exchange.js';
export { readKeyFile, writeKeyFile, checkKeyLength, MIN_KEY_LENGTH, GENERATED_KEY_BYTES } from './key-file.js';
export { secretResponse, sharedSecretSteps, connectionBinding, NONCE_SIZE, type Role, type ConnectionBinding } from './shared-secret.js';

/** Makes the challenge we send. */
export type ChallengeCreate = () => Uint8Array | Promise<Uint8Array>;
/** Checks the peer's response to our challenge. */
export type ChallengeVerify = (challenge: Uint8Array, response: Uint8Array) => boolean | Promise<boolean>;
/** Answers the peer's challenge. */
export type ChallengeSolve = (challenge: Uint8Array) => Uint8Array | Promise<Uint8Array>;
/** A shared secret: the key bytes, or a key file. */
export type SharedSecret = Uint8Array | { keyFile: string };

/** What a policy asks of the exchange. */
export interface ChallengeConfig {
  send?: { create: ChallengeCreate; verify: ChallengeVerify };
  receive?: ChallengeSolve;
  secret?: SharedSecret;
}

/** Options of one exchange. */
export interface ExchangeOptions {
  /** Our end of the connection: `server` accepted it, `client` connected. */
  role: Role;
  /** ms bound on the whole exchange. */
  timeout: number;
  signal?: AbortSignal;
  /** Largest payload accepted from the peer, in bytes. @default 65536 */
  maxPayload?: number;
}

/**
 * Runs the exchange a policy asks for on a connected socket. Resolves `{ ok: false }` when
 * the peer's answer does not verify; rejects with ERR_SECPOLICY_PROTOCOL, _TIMEOUT,
 * _ABORTED, or (for a key file) _KEY_FILE / _WEAK_SECRET.
 */
export async function runChallenge(socket: Socket, config: ChallengeConfig, options: ExchangeOptions): Promise<ExchangeResult> {
  const maxPayload = maxPayloadOption('options.maxPayload', options.maxPayload);
  const bounds = { timeout: options.timeout, maxPayload, ...(options.signal && { signal: options.signal }) };
  let steps: ExchangeSteps;
  if (config.secret !== undefined) {
    // Read per exchange, so that a replaced key (or one whose permissions were loosened) takes effect.
    const key = config.secret instanceof Uint8Array ? config.secret : readKeyFile(config.secret.keyFile);
    steps = sharedSecretSteps(key, options.role, () => connectionBinding(socket, options.role));
  } else {
    steps = {};
    if (config.send) {
      steps.create = config.send.create;
      steps.verify = config.send.verify;
    }
    if (config.receive) steps.solve = config.receive;
  }
  return runExchange(socket, steps, bounds);
}
// Used by other rooms of this package; not re-exported by the package root.
export { generateKey } from './key-file.js';
