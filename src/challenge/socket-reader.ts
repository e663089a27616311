/**
 * Reads frames off a net.Socket for the length of one exchange. It asks the stream for
 * no more bytes than the frame in progress still needs, so whatever the peer sent after
 * its last frame stays in the socket's buffer, in order, for the application. Listeners
 * are attached once and all removed by `release()`; the socket is left paused-not-flowing,
 * as a fresh socket is, so that a later 'data' listener or pipe() starts it.
 */
import type { Socket } from 'node:net';
import { ErrorCode, SecpolicyError } from '../errors.js';
import { FrameDecoder, FrameType, type Frame } from './frame.js';

const TYPE_NAME = ['REQUEST', 'RESPONSE'] as const;

/** Frame I/O over one socket, bounded by a failure that any step may be woken with. */
export class SocketFrames {
  readonly #socket: Socket;
  readonly #decoder: FrameDecoder;
  readonly #pending: Frame[] = [];
  readonly #failed: Promise<never>;
  #reject!: (error: SecpolicyError) => void;
  #failure: SecpolicyError | undefined;
  #ended = false;
  #wake: (() => void) | undefined;
  readonly #onReadable = () => this.#notify();
  readonly #onEnd = () => {
    this.#ended = true;
    this.#notify();
  };
  readonly #onClose = () => this.fail(new SecpolicyError(ErrorCode.PROTOCOL, 'challenge exchange: the connection closed'));
  readonly #onError = (cause: NodeJS.ErrnoException) =>
    this.fail(new SecpolicyError(ErrorCode.PROTOCOL, `challenge exchange: socket error (${cause.code ?? cause.message})`, { cause }));

  constructor(socket: Socket, maxPayload: number, version?: number) {
    this.#socket = socket;
    this.#decoder = new FrameDecoder({ maxPayload, ...(version !== undefined && { version }) });
    this.#failed = new Promise<never>((_, reject) => (this.#reject = reject));
    this.#failed.catch(() => {});
    if (socket.destroyed || !socket.readable || socket.readableEnded) {
      this.fail(new SecpolicyError(ErrorCode.PROTOCOL, 'challenge exchange: the socket is closed'));
      return;
    }
    socket.on('readable', this.#onReadable);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onClose);
    socket.on('error', this.#onError);
  }

  /** Why the exchange stopped, once it has. */
  get failure(): SecpolicyError | undefined {
    return this.#failure;
  }

  /** Stops the exchange: the step in progress rejects with `error` (the first failure wins). */
  fail(error: SecpolicyError): void {
    if (this.#failure) return;
    this.#failure = error;
    this.#reject(error);
  }

  /** Awaits a step (user code, a write) unless the exchange fails first. */
  guard<T>(step: T | Promise<T>): Promise<T> {
    return Promise.race([Promise.resolve(step), this.#failed]);
  }

  /** Writes a frame; resolves once the socket has taken it. */
  write(frame: Buffer): Promise<void> {
    return this.guard(
      new Promise<void>((resolve, reject) => {
        this.#socket.write(frame, (err) => {
          if (!err) return resolve();
          const code = (err as NodeJS.ErrnoException).code ?? err.message;
          reject(new SecpolicyError(ErrorCode.PROTOCOL, `challenge exchange: write failed (${code})`, { cause: err }));
        });
      }),
    );
  }

  /** Reads the next frame, which must be of type `type`. */
  async read(type: FrameType): Promise<Uint8Array> {
    for (;;) {
      if (this.#failure) throw this.#failure;
      this.#pull();
      const frame = this.#pending.shift();
      if (frame) {
        if (frame.type !== type)
          throw new SecpolicyError(
            ErrorCode.PROTOCOL,
            `challenge frame: expected a ${TYPE_NAME[type]}, received a ${TYPE_NAME[frame.type]}`,
          );
        return frame.payload;
      }
      if (this.#ended) {
        this.#decoder.end();
        throw new SecpolicyError(ErrorCode.PROTOCOL, `challenge exchange: the peer ended the stream before its ${TYPE_NAME[type]}`);
      }
      await this.guard(new Promise<void>((resolve) => (this.#wake = resolve)));
    }
  }

  /** Detaches from the socket. Unread bytes stay in its buffer for the application. */
  release(): void {
    const s = this.#socket;
    s.removeListener('readable', this.#onReadable);
    s.removeListener('end', this.#onEnd);
    s.removeListener('close', this.#onClose);
    s.removeListener('error', this.#onError);
    this.#wake = undefined;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Takes bytes from the stream, never more than the frame in progress still needs. */
  #pull(): void {
    const s = this.#socket;
    while (this.#pending.length === 0) {
      if (s.readableLength === 0) {
        // read(0) asks the stream to refill and re-arms the 'readable' event.
        s.read(0);
        if (s.readableLength === 0) return;
      }
      const chunk = s.read(Math.min(this.#decoder.wanted, s.readableLength)) as Buffer | null;
      if (chunk === null) return;
      this.#pending.push(...this.#decoder.push(chunk));
    }
  }
}
