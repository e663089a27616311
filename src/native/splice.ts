/**
 * The zero-copy relay as the rest of the package sees it: take a net.Socket's fd away
 * from Node ({@link takeSocket}), and join two such fds in a worker thread that moves
 * bytes between them with splice(2) ({@link startRelay}). Payloads never pass through
 * JavaScript, and the main thread's event loop never sees them.
 */
import type { Socket } from 'node:net';
import { MessageChannel, Worker } from 'node:worker_threads';
import { ErrorCode, SecpolicyError } from '../errors.js';
import { errnoError, errnoName } from './libc.js';
import { K, spliceCalls } from './splice-calls.js';
import type { Command, Report } from './splice-worker.js';
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
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(new URL('./splice-worker.js', import.meta.url), {
    workerData: { port: port2, pipeSize: options.pipeSize ?? 256 * 1024 },
    transferList: [port2],
  });
  const wake = await new Promise<number>((resolve, reject) => {
    const onMessage = (m: Report): void => {
      worker.off('error', onError);
      worker.off('message', onMessage);
      if (m.op === 'ready') resolve(m.wake);
      else reject(unavailable(m.op === 'unavailable' ? m.reason : `unexpected report ${m.op}`));
    };
    const onError = (error: Error): void => {
      worker.off('message', onMessage);
      reject(unavailable(error.message));
    };
    worker.on('message', onMessage);
    worker.once('error', onError);
  });
  const one = Buffer.alloc(8);
  one.writeUInt32LE(1, 0);
  const pairs = new Map<number, (error?: string) => void>();
  let nextId = 1;
  let dead: string | undefined;
  // Referenced only while pairs are open: open connections keep the process alive, as sockets do.
  worker.unref();
  // Commands are batched per turn of the event loop: one message and one wake-up however many pairs joined.
  let queue: Command[] = [];
  const flush = (): void => {
    const batch = queue;
    queue = [];
    port1.postMessage(batch);
    calls.write(wake, one, 8);
  };
  const send = (m: Command): void => {
    if (queue.push(m) === 1) setImmediate(flush);
  };
  const finish = (id: number, error?: string): void => {
    const done = pairs.get(id);
    if (!done) return;
    pairs.delete(id);
    if (pairs.size === 0) worker.unref();
    done(error);
  };
  worker.on('message', (m: Report) => {
    if (m.op === 'closed') for (const id of m.ids) finish(id, m.errors?.[id]);
  });
  const exited = new Promise<void>((resolve) => {
    const gone = (why: string): void => {
      dead = why;
      for (const id of [...pairs.keys()]) finish(id, why);
      resolve();
    };
    worker.once('error', (e) => gone(`the relay worker failed: ${e.message}`));
    worker.once('exit', () => gone('the relay worker has stopped'));
  });
  return {
    join(a, b, onClosed) {
      if (dead !== undefined) throw unavailable(dead);
      // Ids stay below 2^31 and never 0 (the worker's wake-up token).
      const id = nextId;
      nextId = nextId >= 0x7fffffff ? 1 : nextId + 1;
      pairs.set(id, onClosed);
      if (pairs.size === 1) worker.ref();
      send({ op: 'join', id, a: a.fd, b: b.fd, ...(b.pending && { toA: b.pending }), ...(a.pending && { toB: a.pending }) });
      return id;
    },
    destroy(id) {
      if (dead === undefined && pairs.has(id)) send({ op: 'destroy', id });
    },
    get size() {
      return pairs.size;
    },
    async stop() {
      if (dead === undefined) {
        // Referenced until it has exited, so that whoever awaits this is not left behind by an emptied event loop.
        worker.ref();
        send({ op: 'stop' });
      }
      await exited;
    },
  };
}
