/**
 * Challenge frames (docs/protocol.md): a 24-byte header — the C struct
 * `{ enum type; uint64 version; size_t payload_size; }` on a 64-bit little-endian ABI —
 * followed by the payload. The decoder is incremental: it accepts any fragmentation and
 * checks the header before it keeps a single payload byte. Custom challenges speak
 * version 1 (the C library's frames); the shared-secret mechanism speaks version 2.
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
/** Version of the frames of a custom challenge (challengeSend / challengeReceive), as the C library writes them. */
export const PROTOCOL_VERSION = 1;
/** Version of the frames of the shared-secret mechanism, whose proofs are bound to the connection. */
export const SHARED_SECRET_VERSION = 2;
/** Every version a decoder can be asked for. */
const KNOWN_VERSIONS: readonly number[] = [PROTOCOL_VERSION, SHARED_SECRET_VERSION];
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

function versionOption(field: string, value: unknown): number {
  if (value === undefined) return PROTOCOL_VERSION;
  if (typeof value !== 'number' || !KNOWN_VERSIONS.includes(value)) throw invalidArg(field, `one of ${KNOWN_VERSIONS.join(', ')}`, value);
  return value;
}

/**
 * Encodes one frame (version 1 unless `version` says 2). Throws ERR_SECPOLICY_INVALID_ARG
 * for an unknown type or version, or an empty payload.
 */
export function encodeFrame(type: FrameType, payload: Uint8Array, version: number = PROTOCOL_VERSION): Buffer {
  if (type !== FrameType.REQUEST && type !== FrameType.RESPONSE) throw invalidArg('type', 'FrameType.REQUEST or FrameType.RESPONSE', type);
  if (!(payload instanceof Uint8Array) || payload.length === 0) throw invalidArg('payload', 'a non-empty Uint8Array', payload);
  versionOption('version', version);
  const frame = Buffer.allocUnsafe(HEADER_SIZE + payload.length);
  frame.writeUInt32LE(type, 0);
  frame.writeUInt32LE(0, 4);
  frame.writeBigUInt64LE(BigInt(version), 8);
  frame.writeBigUInt64LE(BigInt(payload.length), 16);
  frame.set(payload, HEADER_SIZE);
  return frame;
}

const EMPTY = Buffer.alloc(0);
const MIN_PAYLOAD_BUFFER = 256;

function protocolError(message: string): SecpolicyError {
  return new SecpolicyError(ErrorCode.PROTOCOL, `challenge frame: ${message}`);
}

/** Why a frame of version `got` is refused where `want` is spoken: names a downgrade for what it is. */
function versionMismatch(got: bigint, want: number): string {
  if (want === SHARED_SECRET_VERSION && got === BigInt(PROTOCOL_VERSION))
    return (
      'the peer sent a version-1 frame where the shared-secret mechanism speaks version 2: it runs the version-1 ' +
      'shared secret, whose proofs a relay can forward, or a custom challenge; refused (there is no fallback)'
    );
  if (want === PROTOCOL_VERSION && got === BigInt(SHARED_SECRET_VERSION))
    return 'the peer sent a version-2 (shared-secret) frame where a custom challenge speaks version 1: the two ends run different policies';
  return `unsupported version ${got} (this exchange speaks version ${want})`;
}

/**
 * Assembles frames from bytes in any fragmentation. Every malformed input throws
 * ERR_SECPOLICY_PROTOCOL, after which the decoder stays failed. It holds what the peer
 * has sent of the frame in progress and nothing more: a header that announces a large
 * payload costs nothing until the bytes arrive, and never more than `maxPayload`.
 */
export class FrameDecoder {
  readonly #maxPayload: number;
  readonly #version: number;
  readonly #header = Buffer.alloc(HEADER_SIZE);
  #headerFill = 0;
  #type: FrameType = FrameType.REQUEST;
  /** Announced size of the payload in progress; 0 while reading a header. */
  #size = 0;
  /** What has arrived of it, in a buffer that grows by doubling up to the announced size. */
  #payload: Buffer = EMPTY;
  #payloadFill = 0;
  #failed: SecpolicyError | undefined;

  /**
   * @param options.maxPayload largest payload accepted, in bytes (default 64 KiB).
   * @param options.version the frame version this exchange speaks (default 1).
   */
  constructor(options: { maxPayload?: number; version?: number } = {}) {
    this.#maxPayload = maxPayloadOption('options.maxPayload', options.maxPayload);
    this.#version = versionOption('options.version', options.version);
  }

  /** Bytes still needed to finish the header or payload in progress (never 0). */
  get wanted(): number {
    return this.#size > 0 ? this.#size - this.#payloadFill : HEADER_SIZE - this.#headerFill;
  }

  /** Bytes held for the frame in progress. */
  get buffered(): number {
    return this.#headerFill + this.#payloadFill;
  }

  /** True when no frame is in progress (a stream may end here). */
  get idle(): boolean {
    return this.#headerFill === 0 && this.#size === 0;
  }

  /** Feeds bytes; returns the frames they completed, in order. */
  push(chunk: Uint8Array): Frame[] {
    if (this.#failed) throw this.#failed;
    const frames: Frame[] = [];
    let at = 0;
    try {
      while (at < chunk.length) {
        if (this.#size === 0) {
          const n = Math.min(HEADER_SIZE - this.#headerFill, chunk.length - at);
          this.#header.set(chunk.subarray(at, at + n), this.#headerFill);
          this.#headerFill += n;
          at += n;
          if (this.#headerFill === HEADER_SIZE) this.#startPayload();
        } else {
          const n = Math.min(this.#size - this.#payloadFill, chunk.length - at);
          this.#reserve(this.#payloadFill + n);
          this.#payload.set(chunk.subarray(at, at + n), this.#payloadFill);
          this.#payloadFill += n;
          at += n;
          if (this.#payloadFill === this.#size) {
            frames.push({ type: this.#type, payload: this.#payload.subarray(0, this.#size) });
            this.#payload = EMPTY;
            this.#size = 0;
            this.#payloadFill = 0;
            this.#headerFill = 0;
          }
        }
      }
    } catch (e) {
      this.#failed = e as SecpolicyError;
      this.#payload = EMPTY;
      throw e;
    }
    return frames;
  }

  /** Declares the end of the stream: throws ERR_SECPOLICY_PROTOCOL if it ends inside a frame. */
  end(): void {
    if (this.#failed) throw this.#failed;
    if (!this.idle) throw protocolError(`stream ended inside a frame (${this.buffered} bytes of it received)`);
  }

  /**
   * Room for `needed` bytes: the buffer doubles (from 256 bytes, never past the announced
   * size), so what is held stays within twice what arrived, however it was fragmented.
   */
  #reserve(needed: number): void {
    if (needed <= this.#payload.length) return;
    let capacity = Math.max(this.#payload.length * 2, MIN_PAYLOAD_BUFFER);
    while (capacity < needed) capacity *= 2;
    // Not from the shared pool: the payload is handed to user code, which may look at its ArrayBuffer.
    const grown = Buffer.allocUnsafeSlow(Math.min(capacity, this.#size));
    this.#payload.copy(grown, 0, 0, this.#payloadFill);
    this.#payload = grown;
  }

  #startPayload(): void {
    const h = this.#header;
    const type = h.readUInt32LE(0);
    if (type !== FrameType.REQUEST && type !== FrameType.RESPONSE) throw protocolError(`unknown type ${type}`);
    const version = h.readBigUInt64LE(8);
    if (version !== BigInt(this.#version)) throw protocolError(versionMismatch(version, this.#version));
    // Checked as a 64-bit value; nothing of that size is ever allocated up front.
    const size = h.readBigUInt64LE(16);
    if (size === 0n) throw protocolError('empty payload');
    if (size > BigInt(this.#maxPayload)) throw protocolError(`payload of ${size} bytes exceeds the limit of ${this.#maxPayload}`);
    this.#type = type;
    this.#size = Number(size);
    this.#payloadFill = 0;
  }
}
