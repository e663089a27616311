/**
 * Challenge frames (PROTOCOL.md): a 24-byte header — the C struct
 * `{ enum type; uint64 version; size_t payload_size; }` on a 64-bit little-endian ABI —
 * followed by the payload. The decoder is incremental: it accepts any fragmentation and
 * checks the header before it keeps a single payload byte.
 */
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';

/** Frame types on the wire. */
export const FrameType = Object.freeze({
  /** A challenge sent to the peer. */
  REQUEST: 0,
  /** The answer to the peer's challenge. */
  RESPONSE: 1,
} as const);

/** One of {@link FrameType}. */
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Size of a frame header in bytes. */
export const HEADER_SIZE = 24;
/** The only protocol version. */
export const PROTOCOL_VERSION = 1;
/** Default cap on a payload, in bytes. @default 65536 */
export const DEFAULT_MAX_PAYLOAD = 64 * 1024;
/**
 * Highest cap a caller may configure: the socket reader asks the stream for at most one
 * payload at a time, and streams refuse reads above 1 GiB; 16 MiB is far beyond any
 * sensible challenge.
 */
export const MAX_MAX_PAYLOAD = 16 * 1024 * 1024;

/** A decoded frame. */
export interface Frame {
  type: FrameType;
  payload: Uint8Array;
}

/** Validates a payload cap option (`field` names it in the error). */
export function maxPayloadOption(field: string, value: unknown): number {
  if (value === undefined) return DEFAULT_MAX_PAYLOAD;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_MAX_PAYLOAD) {
    throw invalidArg(field, `an integer number of bytes from 1 to ${MAX_MAX_PAYLOAD}`, value);
  }
  return value;
}

/** Encodes one frame. Throws ERR_SECPOLICY_INVALID_ARG for an unknown type or an empty payload. */
export function encodeFrame(type: FrameType, payload: Uint8Array): Buffer {
  if (type !== FrameType.REQUEST && type !== FrameType.RESPONSE) throw invalidArg('type', 'FrameType.REQUEST or FrameType.RESPONSE', type);
  if (!(payload instanceof Uint8Array) || payload.length === 0) throw invalidArg('payload', 'a non-empty Uint8Array', payload);
  const frame = Buffer.allocUnsafe(HEADER_SIZE + payload.length);
  frame.writeUInt32LE(type, 0);
  frame.writeUInt32LE(0, 4);
  frame.writeBigUInt64LE(BigInt(PROTOCOL_VERSION), 8);
  frame.writeBigUInt64LE(BigInt(payload.length), 16);
  frame.set(payload, HEADER_SIZE);
  return frame;
}

function protocolError(message: string): SecpolicyError {
  return new SecpolicyError(ErrorCode.PROTOCOL, `challenge frame: ${message}`);
}

/**
 * Assembles frames from bytes in any fragmentation. Every malformed input throws
 * ERR_SECPOLICY_PROTOCOL, after which the decoder stays failed. It never holds more than
 * one header plus one payload of at most `maxPayload` bytes.
 */
export class FrameDecoder {
  readonly #maxPayload: number;
  readonly #header = Buffer.alloc(HEADER_SIZE);
  #headerFill = 0;
  #type: FrameType = FrameType.REQUEST;
  #payload: Buffer | undefined;
  #payloadFill = 0;
  #failed: SecpolicyError | undefined;

  /** @param options.maxPayload largest payload accepted, in bytes (default 64 KiB). */
  constructor(options: { maxPayload?: number } = {}) {
    this.#maxPayload = maxPayloadOption('options.maxPayload', options.maxPayload);
  }

  /** Bytes still needed to finish the header or payload in progress (never 0). */
  get wanted(): number {
    return this.#payload ? this.#payload.length - this.#payloadFill : HEADER_SIZE - this.#headerFill;
  }

  /** Bytes held for the frame in progress. */
  get buffered(): number {
    return this.#headerFill + this.#payloadFill;
  }

  /** True when no frame is in progress (a stream may end here). */
  get idle(): boolean {
    return this.#headerFill === 0 && !this.#payload;
  }

  /** Feeds bytes; returns the frames they completed, in order. */
  push(chunk: Uint8Array): Frame[] {
    if (this.#failed) throw this.#failed;
    const frames: Frame[] = [];
    let at = 0;
    try {
      while (at < chunk.length) {
        if (!this.#payload) {
          const n = Math.min(HEADER_SIZE - this.#headerFill, chunk.length - at);
          this.#header.set(chunk.subarray(at, at + n), this.#headerFill);
          this.#headerFill += n;
          at += n;
          if (this.#headerFill === HEADER_SIZE) this.#startPayload();
        } else {
          const n = Math.min(this.#payload.length - this.#payloadFill, chunk.length - at);
          this.#payload.set(chunk.subarray(at, at + n), this.#payloadFill);
          this.#payloadFill += n;
          at += n;
        }
        if (this.#payload && this.#payloadFill === this.#payload.length) {
          frames.push({ type: this.#type, payload: this.#payload });
          this.#payload = undefined;
          this.#payloadFill = 0;
          this.#headerFill = 0;
        }
      }
    } catch (e) {
      this.#failed = e as SecpolicyError;
      this.#payload = undefined;
      throw e;
    }
    return frames;
  }

  /** Declares the end of the stream: throws ERR_SECPOLICY_PROTOCOL if it ends inside a frame. */
  end(): void {
    if (this.#failed) throw this.#failed;
    if (!this.idle) throw protocolError(`stream ended inside a frame (${this.buffered} bytes of it received)`);
  }

  #startPayload(): void {
    const h = this.#header;
    const type = h.readUInt32LE(0);
    if (type !== FrameType.REQUEST && type !== FrameType.RESPONSE) throw protocolError(`unknown type ${type}`);
    const version = h.readBigUInt64LE(8);
    if (version !== BigInt(PROTOCOL_VERSION)) throw protocolError(`unsupported version ${version}`);
    // Checked as a 64-bit value, before anything of that size is allocated.
    const size = h.readBigUInt64LE(16);
    if (size === 0n) throw protocolError('empty payload');
    if (size > BigInt(this.#maxPayload)) throw protocolError(`payload of ${size} bytes exceeds the limit of ${this.#maxPayload}`);
    this.#type = type;
    this.#payload = Buffer.alloc(Number(size));
    this.#payloadFill = 0;
  }
}
