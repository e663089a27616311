/**
 * The zero-copy relay as the rest of the package sees it: take a net.Socket's fd away
 * from Node ({@link takeSocket}), and join two such fds in a worker thread that moves
 * bytes between them with splice(2) ({@link startRelay}). Payloads never pass through
 * JavaScript, and the main thread's event loop never sees them.
 */
import type { Socket } from 'node:net';
import { ErrorCode, SecpolicyError } from '../errors.js';
import { WorkerPort } from '../worker-port.js';
import { errnoError, errnoName } from './libc.js';
import { K, spliceCalls } from './splice-calls.js';
import type { Closed, Command } from './splice-worker.js';
import { sockaddrUn, socketFd } from './socket.js';

/** A connected stream fd taken from a net.Socket, and what Node had already read from it. */
export interface TakenSocket {
  fd: number;
  /** Bytes Node read from the socket before the hand-over; they come before the fd's. */
  pending: Buffer | undefined;
}

/**
 * Takes the connection away from `socket`: duplicates its fd (F_DUPFD_CLOEXEC, so the
 * connection outlives the handle), collects what Node already buffered from it, and
 * destroys the handle (which closes only Node's fd, never shuts the connection down).
 * Throws ERR_SECPOLICY_PEER_UNAVAILABLE when the socket has no fd, and
 * ERR_SECPOLICY_NATIVE when it still has writes queued (they would be lost) or the fd
 * cannot be duplicated; the socket is left as it was then.
 */
export function takeSocket(socket: Socket): TakenSocket {
  const fd = socketFd(socket);
  if (socket.writableLength > 0) {
    throw new SecpolicyError(ErrorCode.NATIVE, 'the socket still has writes queued; it cannot be handed over');
  }
  const c = spliceCalls();
  const dup = c.fcntl(fd, K.F_DUPFD_CLOEXEC, 3) as number;
  if (dup < 0) throw errnoError('fcntl(F_DUPFD_CLOEXEC)', c.errno());
  // Synchronous from here on: no read callback can run between the drain and the destroy.
  const chunks: Buffer[] = [];
  for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) chunks.push(chunk);
  socket.destroy();
  return { fd: dup, pending: chunks.length === 0 ? undefined : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) };
}

/** Why {@link connectUnix} failed: the errno and its name (`EAGAIN` when the accept queue is full). */
export interface ConnectFailure {
  errno: number;
  code: string;
}

const addresses = new Map<string, Buffer>();

/**
 * A connected, non-blocking stream socket to the socket file `path`, as a raw fd for
 * {@link Relay.join} (no net.Socket is made: the relay is its only user), or why not. A
 * UNIX stream connect completes or fails at once; a full accept queue is EAGAIN. Paths
 * longer than sun_path allows are ENAMETOOLONG.
 */
export function connectUnix(path: string): TakenSocket | ConnectFailure {
  let addr = addresses.get(path);
  if (!addr) {
    const bytes = Buffer.from(path, 'utf8');
    if (bytes.length > 107 || bytes.includes(0)) return { errno: 36, code: 'ENAMETOOLONG' };
    addr = sockaddrUn(bytes, false);
    if (addresses.size > 64) addresses.clear();
    addresses.set(path, addr);
  }
  const c = spliceCalls();
  const fd = c.socket(1, 1 | K.O_NONBLOCK | K.O_CLOEXEC, 0) as number;
  if (fd < 0) return failure(c.errno());
  if (c.connect(fd, addr, addr.length) !== 0) {
    const errno = c.errno();
    c.close(fd);
    return failure(errno);
  }
  return { fd, pending: undefined };
}

function failure(errno: number): ConnectFailure {
  return { errno, code: errnoName(errno) };
}

/** close(2) of an fd taken with {@link takeSocket} that was never joined. */
export function closeTaken(fd: number): void {
  spliceCalls().close(fd);
}

/** Options of {@link startRelay}. */
export interface RelayOptions {
  /**
   * Pipe size asked for each direction (F_SETPIPE_SZ); 0 keeps the kernel's default (64 KiB).
   * Larger pipes move more per splice(2) call (the C anchor of bench/proxy moved 2 GiB in 0.95 s with 256 KiB
   * pipes against 1.5 s with 64 KiB). @default 262144
   */
  pipeSize?: number;
}

/** A running relay worker. */
export interface Relay {
  /**
   * Joins two connected stream fds (both then owned by the relay) until both directions
   * have ended, or either fails. `toA` / `toB` are bytes to deliver first. `onClosed` is
   * called once when both fds are closed, with a reason when it ended on an error.
   * Returns the pair's id for {@link Relay.destroy}.
   */
  join(a: TakenSocket, b: TakenSocket, onClosed: (error?: string) => void): number;
  /** Closes a joined pair at once. */
  destroy(id: number): void;
  /** Pairs still open. */
  readonly size: number;
  /** Closes every pair and ends the worker. */
  stop(): Promise<void>;
}

/**
 * Starts a relay worker. Rejects with ERR_SECPOLICY_UNSUPPORTED_PLATFORM, saying why,
 * when the worker cannot bind or use what it needs (no koffi, a libc without a symbol, no
 * epoll): callers then keep bytes in JavaScript streams.
 */
export async function startRelay(options: RelayOptions = {}): Promise<Relay> {
  const unavailable = (reason: string): SecpolicyError =>
    new SecpolicyError(ErrorCode.UNSUPPORTED_PLATFORM, `the splice(2) relay is unavailable: ${reason}`);
  let calls;
  try {
    calls = spliceCalls();
  } catch (error) {
    throw unavailable((error as Error).message);
  }
  const one = Buffer.alloc(8);
  one.writeUInt32LE(1, 0);
  let wake = -1;
  // Commands are batched per turn of the event loop: one message and one wake-up however many pairs joined.
  // Referenced only while pairs are open: open connections keep the process alive, as sockets do.
  // A relay that died is not restarted: its connections are gone, and the proxy says so.
  const port = new WorkerPort<Command, Closed>({
    url: new URL('./splice-worker.js', import.meta.url),
    name: 'the relay worker',
    data: { pipeSize: options.pipeSize ?? 256 * 1024 },
    batch: { flushed: () => calls.write(wake, one, 8) },
    restart: false,
  });
  try {
    wake = (await port.start()) as number;
  } catch (error) {
    throw unavailable((error as Error).message);
  }
  return {
    join(a, b, onClosed) {
      let call;
      try {
        call = port.call({ op: 'join', a: a.fd, b: b.fd, ...(b.pending && { toA: b.pending }), ...(a.pending && { toB: a.pending }) });
      } catch (error) {
        throw unavailable((error as Error).message);
      }
      call.answer.then(
        (closed) => onClosed(closed.error),
        (error: unknown) => onClosed((error as Error).message),
      );
      return call.id;
    },
    destroy(id) {
      port.post({ op: 'destroy', id });
    },
    get size() {
      return port.size;
    },
    stop() {
      return port.stop({ op: 'stop' });
    },
  };
}
