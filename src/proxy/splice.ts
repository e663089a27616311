/**
 * Joins two connected sockets into one conversation: each side's bytes go to the other
 * in order, with backpressure (a side that cannot keep up pauses the other), and each
 * side's end of stream becomes a shutdown of the other's write side, so that a client
 * that has finished sending still receives the whole reply (and the other way round).
 */
import type { Socket } from 'node:net';

/** A joined client and upstream connection. */
export interface Pair {
  /** Resolves once both sockets are closed. */
  closed: Promise<void>;
  /** Cuts both connections at once. */
  destroy(): void;
}

/** Options of {@link splice}. */
export interface SpliceOptions {
  /** How long the upstream may take to connect, in ms. */
  connectTimeout: number;
  /** Called once when the upstream could not be reached; the client is then closed. */
  onTargetError: (reason: string) => void;
}

// After telling a client that the target is gone, how long its unread bytes are drained
// before the socket is cut. Closing with unread bytes would reset the client instead.
const DRAIN_MS = 1000;

/** Forwards `client` <-> `upstream` (`upstream` still connecting). */
export function splice(client: Socket, upstream: Socket, options: SpliceOptions): Pair {
  let connected = false;
  const closed = Promise.all([closeOf(client), closeOf(upstream)]).then(() => undefined);
  const destroy = (): void => {
    client.destroy();
    upstream.destroy();
  };

  const timer = setTimeout(() => fail(`no connection within ${options.connectTimeout} ms`), options.connectTimeout);
  upstream.once('connect', () => {
    connected = true;
    clearTimeout(timer);
  });
  const fail = (reason: string): void => {
    clearTimeout(timer);
    client.unpipe(upstream);
    upstream.destroy();
    options.onTargetError(reason);
    // A clean end for the client: EOF on its reads, its pending bytes read and dropped.
    client.on('data', () => {});
    client.end();
    setTimeout(() => client.destroy(), DRAIN_MS).unref();
  };

  // pipe() writes with backpressure and ends the destination at the source's end.
  client.pipe(upstream);
  upstream.pipe(client);

  upstream.on('error', (e: NodeJS.ErrnoException) => {
    if (!connected) fail(e.code ?? e.message);
    else client.destroy();
  });
  client.on('error', () => upstream.destroy());
  // A side closed without a clean end of stream (reset, destroyed) cuts the other side;
  // after a clean end the other side finishes flushing and closes by itself.
  client.on('close', () => {
    clearTimeout(timer); // a client gone before the target answered is not the target's failure
    if (!client.readableEnded) upstream.destroy();
  });
  upstream.on('close', () => {
    if (!upstream.readableEnded && connected) client.destroy();
  });
  return { closed, destroy };
}

function closeOf(socket: Socket): Promise<void> {
  return socket.closed ? Promise.resolve() : new Promise((resolve) => socket.once('close', () => resolve()));
}
