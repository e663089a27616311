/** The challenge room's front door (framing, exchange, shared secret). */
import type { Socket } from 'node:net';
import { ErrorCode, SecpolicyError } from '../errors.js';

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

export interface ExchangeOptions {
  role: 'server' | 'client';
  timeout: number;
  signal?: AbortSignal;
}

export type ExchangeResult = { ok: true } | { ok: false; actual: unknown; message: string };

/** Runs the exchange on a connected socket. */
export async function runChallenge(_socket: Socket, _config: ChallengeConfig, _options: ExchangeOptions): Promise<ExchangeResult> {
  throw new SecpolicyError(ErrorCode.PROTOCOL, 'challenge exchange: not built yet');
}
