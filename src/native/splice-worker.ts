/**
 * The relay's worker thread: one epoll loop moving bytes between joined pairs of stream
 * sockets with splice(2) through a pipe per direction, so payloads never enter
 * JavaScript memory. Backpressure is the kernel's: a direction whose pipe is full stops
 * reading its source until the destination drains. An end of stream on one side becomes
 * shutdown(SHUT_WR) on the other once the pipe is empty (half-close); an error on either
 * side closes both. Commands arrive in batches on a MessagePort, with an eventfd to wake the loop.
 */
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import type { WorkerAnswer, WorkerRequest } from '../worker-port.js';
import { EPOLL_EVENT, K, spliceCalls, type SpliceCalls } from './splice-calls.js';

/**
 * A command from the main thread. A join's pair id is its request id, which is also the
 * pair's epoll token (never 0, the wake-up eventfd's); its answer is sent when the pair
 * has closed.
 */
export type Command =
  { op: 'join'; a: number; b: number; toA?: Uint8Array; toB?: Uint8Array } | { op: 'destroy'; id: number } | { op: 'stop' };

/** The answer to a join: the pair has closed, with a reason when it ended on an error. */
export interface Closed {
  error?: string;
}

/** One direction of a pair: bytes read from `src` wait in the pipe until `dst` takes them. */
interface Direction {
  src: number;
  dst: number;
  /** Pipe read and write ends; -1 until the direction first carries bytes. */
  pr: number;
  pw: number;
  /** Bytes sitting in the pipe. */
  inPipe: number;
  /** Bytes that JavaScript had already read from `src` before the hand-over, written first. */
  pending: Buffer | undefined;
  /** `src` reached its end of stream. */
  eof: boolean;
  /** `dst` was shut down for writing (the end passed on). */
  shut: boolean;
}

interface Conn {
  id: number;
  a: number;
  b: number;
  ab: Direction;
  ba: Direction;
}

const MAX_EVENTS = 256;
// Empty pipes kept for the next direction that has bytes to move: no pipe2() or close()
// per connection, and a connection that is idle holds no pipe.
const PIPE_POOL = 64;
// Wakes now and then even when idle, so that a process exiting without stopping the
// relay is not held up by a thread parked in epoll_wait.
const IDLE_WAKE_MS = 500;

function direction(src: number, dst: number, pending: Uint8Array | undefined): Direction {
  return {
    src,
    dst,
    pr: -1,
    pw: -1,
    inPipe: 0,
    pending: pending && pending.length > 0 ? Buffer.from(pending.buffer, pending.byteOffset, pending.length) : undefined,
    eof: false,
    shut: false,
  };
}

/** The loop; returns when told to stop. */
function main(port: MessagePort, pipeSize: number): void {
  let c: SpliceCalls;
  let ep: number;
  let wake: number;
  try {
    c = spliceCalls();
    ep = c.epoll_create1(K.O_CLOEXEC) as number;
    if (ep < 0) throw new Error(`epoll_create1 failed: errno ${c.errno()}`);
    wake = c.eventfd(0, K.O_NONBLOCK | K.O_CLOEXEC) as number;
    if (wake < 0) throw new Error(`eventfd failed: errno ${c.errno()}`);
  } catch (error) {
    return void port.postMessage({ unavailable: (error as Error).message } satisfies WorkerAnswer<Closed>);
  }
  const ev = Buffer.alloc(EPOLL_EVENT.size);
  const events = Buffer.alloc(EPOLL_EVENT.size * MAX_EVENTS);
  const pipeFds = Buffer.alloc(8);
  const counter = Buffer.alloc(8);
  const conns = new Map<number, Conn>();
  const pool: Array<[number, number]> = [];
  // Reports are batched per turn of the loop: one message however many pairs closed.
  let closed: Array<{ id: number; value: Closed }> = [];
  const FLAGS = K.SPLICE_F_MOVE | K.SPLICE_F_NONBLOCK;

  const ctl = (op: number, fd: number, mask: number, token: number): number => {
    ev.writeUInt32LE(mask >>> 0, 0);
    ev.writeUInt32LE(token, EPOLL_EVENT.data);
    ev.writeUInt32LE(0, EPOLL_EVENT.data + 4);
    return c.epoll_ctl(ep, op, fd, ev) as number;
  };
  // Tokens: 0 is the wake-up eventfd; a pair's two sockets both carry its id.
  if (ctl(K.EPOLL_CTL_ADD, wake, K.EPOLLIN, 0) !== 0) {
    return void port.postMessage({ unavailable: `epoll_ctl failed: errno ${c.errno()}` } satisfies WorkerAnswer<Closed>);
  }

  const openPipe = (d: Direction): boolean => {
    const reused = pool.pop();
    if (reused) {
      [d.pr, d.pw] = reused;
      return true;
    }
    if (c.pipe2(pipeFds, K.O_NONBLOCK | K.O_CLOEXEC) !== 0) return false;
    d.pr = pipeFds.readInt32LE(0);
    d.pw = pipeFds.readInt32LE(4);
    if (pipeSize > 0) c.fcntl(d.pw, K.F_SETPIPE_SZ, pipeSize); // best effort: a smaller pipe still works
    return true;
  };

  /** An empty pipe goes back to the pool (or is closed), so that an idle direction holds none. */
  const releasePipe = (d: Direction): void => {
    if (d.pr < 0) return;
    if (d.inPipe === 0 && pool.length < PIPE_POOL) pool.push([d.pr, d.pw]);
    else {
      c.close(d.pr);
      c.close(d.pw);
    }
    d.pr = d.pw = -1;
    d.inPipe = 0;
  };

  const closeAll = (conn: Conn, error?: string): void => {
    if (!conns.delete(conn.id)) return;
    // Removed from the epoll set first: the close below may not be the file's last reference.
    c.epoll_ctl(ep, K.EPOLL_CTL_DEL, conn.a, ev);
    c.epoll_ctl(ep, K.EPOLL_CTL_DEL, conn.b, ev);
    c.close(conn.a);
    c.close(conn.b);
    for (const d of [conn.ab, conn.ba]) releasePipe(d);
    closed.push({ id: conn.id, value: error === undefined ? {} : { error } });
  };
  const flushReports = (): void => {
    if (closed.length === 0) return;
    port.postMessage(closed satisfies WorkerAnswer<Closed>);
    closed = [];
  };

  /** Moves what can move in one direction without blocking; an error message, or undefined. */
  const pump = (d: Direction): string | undefined => {
    for (;;) {
      let progress = false;
      if (d.pending) {
        const n = c.write(d.dst, d.pending, d.pending.length) as number;
        if (n < 0) {
          const e = c.errno();
          if (e === K.EAGAIN) break;
          if (e !== K.EINTR) return `write: errno ${e}`;
          continue;
        }
        d.pending = n === d.pending.length ? undefined : d.pending.subarray(n);
        continue;
      }
      if (!d.eof && d.pr < 0 && !openPipe(d)) return `pipe2: errno ${c.errno()}`;
      if (!d.eof) {
        const n = c.splice(d.src, null, d.pw, null, 1 << 30, FLAGS) as number;
        if (n > 0) {
          d.inPipe += n;
          progress = true;
        } else if (n === 0) {
          d.eof = true;
          progress = true;
        } else {
          const e = c.errno();
          // EAGAIN: either the socket is empty or the pipe is full.
          if (e !== K.EAGAIN && e !== K.EINTR) return `splice from socket: errno ${e}`;
        }
      }
      if (d.inPipe > 0) {
        const n = c.splice(d.pr, null, d.dst, null, d.inPipe, FLAGS) as number;
        if (n > 0) {
          d.inPipe -= n;
          progress = true;
        } else if (n < 0) {
          const e = c.errno();
          if (e !== K.EAGAIN && e !== K.EINTR) return `splice to socket: errno ${e}`;
        }
      }
      if (!progress) break;
    }
    // Pipes are counted against the user's pipe-buffer limit: only directions with bytes in flight hold one.
    if (d.inPipe === 0) releasePipe(d);
    if (d.eof && d.inPipe === 0 && !d.pending && !d.shut) {
      d.shut = true;
      c.shutdown(d.dst, K.SHUT_WR);
    }
    return undefined;
  };

  const service = (conn: Conn): void => {
    const error = pump(conn.ab) ?? pump(conn.ba);
    if (error !== undefined) return closeAll(conn, error);
    if (conn.ab.shut && conn.ba.shut) closeAll(conn);
  };

  const command = ({ id, body: m }: WorkerRequest<Command>): boolean => {
    if (m.op === 'stop') return false;
    if (m.op === 'destroy') {
      const conn = conns.get(m.id);
      if (conn) closeAll(conn);
      return true;
    }
    const conn: Conn = { id, a: m.a, b: m.b, ab: direction(m.a, m.b, m.toB), ba: direction(m.b, m.a, m.toA) };
    conns.set(id, conn);
    const mask = K.EPOLLIN | K.EPOLLOUT | K.EPOLLRDHUP | K.EPOLLET;
    if (ctl(K.EPOLL_CTL_ADD, m.a, mask, id) !== 0 || ctl(K.EPOLL_CTL_ADD, m.b, mask, id) !== 0) {
      closeAll(conn, `epoll_ctl: errno ${c.errno()}`);
      return true;
    }
    // Edge-triggered: whatever is already readable would raise no new edge.
    service(conn);
    return true;
  };

  port.postMessage({ ready: wake } satisfies WorkerAnswer<Closed>);
  for (;;) {
    const n = c.epoll_wait(ep, events, MAX_EVENTS, IDLE_WAKE_MS) as number;
    if (n < 0) {
      if (c.errno() === K.EINTR) continue;
      break;
    }
    let stop = false;
    for (let i = 0; i < n; i++) {
      const token = events.readUInt32LE(i * EPOLL_EVENT.size + EPOLL_EVENT.data);
      if (token === 0) {
        c.read(wake, counter, 8);
        for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port))
          for (const one of m.message as Array<WorkerRequest<Command>>) if (!command(one)) stop = true;
        continue;
      }
      const conn = conns.get(token);
      if (conn) service(conn);
    }
    flushReports();
    if (stop) break;
  }
  for (const conn of [...conns.values()]) closeAll(conn);
  flushReports();
  for (const [r, w] of pool) {
    c.close(r);
    c.close(w);
  }
  c.close(wake);
  c.close(ep);
}

const data = workerData as { port: MessagePort; pipeSize: number };
main(data.port, data.pipeSize);
