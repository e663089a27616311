/**
 * The three-step exchange of docs/protocol.md, run in the same order on both sides so that a
 * mutual exchange cannot deadlock: (1) send our challenge, (2) answer the peer's,
 * (3) verify the peer's answer to ours. One timeout bounds the whole exchange, user
 * callbacks included.
 */
import type { Socket } from 'node:net';
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import { encodeFrame, FrameType, MAX_MAX_PAYLOAD } from './frame.js';
import { SocketFrames } from './socket-reader.js';

/** The steps one side runs; any of them may be absent. */
export interface ExchangeSteps {
  /** Makes the challenge we send (step 1). */
  create?: () => Uint8Array | Promise<Uint8Array>;
  /** Answers the peer's challenge (step 2). */
  solve?: (challenge: Uint8Array) => Uint8Array | Promise<Uint8Array>;
  /** Checks the peer's answer to our challenge (step 3). */
  verify?: (challenge: Uint8Array, response: Uint8Array) => boolean | Promise<boolean>;
  /** Frame version written and required from the peer. @default 1 */
  version?: number;
}

/** Bounds of one exchange. */
export interface ExchangeBounds {
  /** ms for the whole exchange. */
  timeout: number;
  signal?: AbortSignal;
  /** Largest payload accepted from the peer, in bytes. */
  maxPayload: number;
}

/** The outcome: verified, or refused with what was found (never a payload's content). */
export type ExchangeResult = { ok: true } | { ok: false; actual: unknown; message: string };

/**
 * A step of our own that cannot go on (a callback threw or returned no bytes, a peer's
 * challenge was refused): the exchange ends as a failed verification, not an I/O error.
 */
export class Refusal extends Error {
  constructor(
    message: string,
    readonly actual: unknown,
  ) {
    super(message);
  }
}

function refused(r: Refusal): ExchangeResult {
  return { ok: false, actual: r.actual, message: r.message };
}

/** Runs user code; a throw or a non-byte result is a refusal naming the step. */
async function bytesFrom(frames: SocketFrames, step: string, fn: () => Uint8Array | Promise<Uint8Array>): Promise<Uint8Array> {
  let value: unknown;
  try {
    value = await frames.guard(fn());
  } catch (e) {
    if (e === frames.failure || e instanceof Refusal) throw e;
    throw new Refusal(`${step} threw: ${(e as Error)?.message ?? String(e)}`, 'an exception');
  }
  // The cap on what we send is the widest any receiver can be configured with; the
  // peer's own cap (64 KiB unless raised) is its business.
  if (!(value instanceof Uint8Array) || value.length === 0 || value.length > MAX_MAX_PAYLOAD) {
    throw new Refusal(
      `${step} must return 1 to ${MAX_MAX_PAYLOAD} bytes`,
      value instanceof Uint8Array ? `${value.length} bytes` : typeof value,
    );
  }
  return value;
}

/**
 * Runs the exchange on a connected socket. Resolves `{ ok: false }` when a verification
 * fails; rejects with ERR_SECPOLICY_PROTOCOL (malformed frame, closed stream, I/O error),
 * ERR_SECPOLICY_TIMEOUT or ERR_SECPOLICY_ABORTED.
 */
export async function runExchange(socket: Socket, steps: ExchangeSteps, bounds: ExchangeBounds): Promise<ExchangeResult> {
  const { signal, timeout, maxPayload } = bounds;
  if (signal?.aborted) throw aborted(signal);
  if (socket.readableEncoding !== null || socket.readableObjectMode) {
    // Frames are bytes: a decoding stream would hand us text.
    throw invalidArg('socket', 'a socket without setEncoding() (apply the policy first)', socket.readableEncoding);
  }
  const frames = new SocketFrames(socket, maxPayload, steps.version);
  const version = steps.version;
  const timer = setTimeout(
    () => frames.fail(new SecpolicyError(ErrorCode.TIMEOUT, `challenge exchange did not finish within ${timeout} ms`)),
    timeout,
  );
  const onAbort = () => frames.fail(aborted(signal!));
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    let challenge: Uint8Array | undefined;
    if (steps.create) {
      challenge = await bytesFrom(frames, 'create()', steps.create);
      await frames.write(encodeFrame(FrameType.REQUEST, challenge, version));
    }
    if (steps.solve) {
      const theirs = await frames.read(FrameType.REQUEST);
      const answer = await bytesFrom(frames, 'solve()', () => steps.solve!(theirs));
      await frames.write(encodeFrame(FrameType.RESPONSE, answer, version));
    }
    if (challenge && steps.verify) {
      const response = await frames.read(FrameType.RESPONSE);
      let verified: unknown;
      try {
        verified = await frames.guard(steps.verify(challenge, response));
      } catch (e) {
        if (e === frames.failure) throw e;
        return {
          ok: false,
          actual: 'verify() threw',
          message: `the challenge response was not verified: verify() threw: ${(e as Error)?.message ?? String(e)}`,
        };
      }
      if (verified !== true)
        return { ok: false, actual: 'a response that did not verify', message: 'the challenge response did not verify' };
    }
    return { ok: true };
  } catch (e) {
    if (e instanceof Refusal) return refused(e);
    throw e;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    frames.release();
  }
}

function aborted(signal: AbortSignal): SecpolicyError {
  return new SecpolicyError(ErrorCode.ABORTED, 'challenge exchange aborted', { cause: signal.reason });
}
