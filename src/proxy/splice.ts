/**
 * Joins two connected sockets into one conversation: each side's bytes go to the other
 * in order, with backpressure (a side that cannot keep up pauses the other), and each
 * side's end of stream becomes a shutdown of the other's write side, so that a client
 * that has finished sending still receives the whole reply (and the other way round).
 */
import type { Socket } from 'node:net';

/** A joined client and upstream connection. */
export interface Pair {
  /** Cuts both connections at once. */
  destroy(): void;
}

/** Options of {@link splice}. */
export interface SpliceOptions {
  /** Called once when the upstream could not be reached; the client is then closed. */
  onTargetError: (reason: string) => void;
  /** Called once both sockets are closed. */
  onClosed: () => void;
}

// After telling a client that the target is gone, how long its unread bytes are drained
// before the socket is cut. Closing with unread bytes would reset the client instead.
const DRAIN_MS = 1000;

/**
 * One direction, `from` -> `to`: what pipe() does, with three listeners instead of a
 * dozen (the proxy sets up two of these per connection, so their cost is its accept rate).
 */
function forward(from: Socket, to: Socket): void {
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) from.pause();
  });
  to.on('drain', () => from.resume());
  from.on('end', () => to.end());
}

/**
 * Forwards `client` <-> `upstream` (`upstream` still connecting). A UNIX stream connect
 * completes or fails at once (a full backlog is EAGAIN, not a wait), so no timer is needed.
 */
export function splice(client: Socket, upstream: Socket, options: SpliceOptions): Pair {
  let connected = false;
  // Counted, not awaited: promises per connection would cost the accept rate.
  let open = 2;
  const closedOne = (): void => {
    if (--open === 0) options.onClosed();
  };
  const destroy = (): void => {
    client.destroy();
    upstream.destroy();
  };
  upstream.once('connect', () => (connected = true));
  forward(client, upstream);
  forward(upstream, client);

  upstream.on('error', (e: NodeJS.ErrnoException) => {
    if (connected) return void client.destroy();
    options.onTargetError(e.code ?? e.message);
    // A clean end for the client: EOF on its reads, its pending bytes read and dropped.
    client.removeAllListeners('data');
    client.on('data', () => {});
    client.resume();
    client.end();
    setTimeout(() => client.destroy(), DRAIN_MS).unref();
  });
  client.on('error', () => upstream.destroy());
  // A side closed without a clean end of stream (reset, destroyed) cuts the other side;
  // after a clean end the other side finishes flushing and closes by itself.
  client.on('close', () => {
    if (!client.readableEnded) upstream.destroy();
    closedOne();
  });
  upstream.on('close', () => {
    if (!upstream.readableEnded && connected) client.destroy();
    closedOne();
  });
  return { destroy };
}
