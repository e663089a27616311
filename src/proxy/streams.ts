/**
 * The proxy's JavaScript data path (used where the splice(2) relay is unavailable): joins
 * two connected sockets into one conversation. Each side's bytes go to the other in
 * order, with backpressure (a side that cannot keep up pauses the other), and each side's
 * end of stream becomes a shutdown of the other's write side, so that a client that has
 * finished sending still receives the whole reply (and the other way round).
 */
import type { Socket } from 'node:net';

/** A joined client and upstream connection. */
export interface Pair {
  /** Cuts both connections at once. */
  destroy(): void;
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

/** Forwards `client` <-> the connected `upstream`; `onClosed` is called once both sockets are closed. */
export function pipeStreams(client: Socket, upstream: Socket, onClosed: () => void): Pair {
  // Counted, not awaited: promises per connection would cost the accept rate.
  let open = 2;
  const closedOne = (): void => {
    if (--open === 0) onClosed();
  };
  forward(client, upstream);
  forward(upstream, client);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  // A side closed without a clean end of stream (reset, destroyed) cuts the other side;
  // after a clean end the other side finishes flushing and closes by itself.
  client.on('close', () => {
    if (!client.readableEnded) upstream.destroy();
    closedOne();
  });
  upstream.on('close', () => {
    if (!upstream.readableEnded) client.destroy();
    closedOne();
  });
  return {
    destroy: () => {
      client.destroy();
      upstream.destroy();
    },
  };
}

/**
 * Ends a client whose target could not be reached: a clean end of stream on its reads,
 * its pending bytes read and dropped (closing with unread bytes would reset it instead),
 * and cut after a short drain. `onClosed` is called once the socket is closed.
 */
export function endClient(client: Socket, onClosed: () => void): Pair {
  client.removeAllListeners('data');
  client.on('data', () => {});
  client.on('error', () => {});
  client.once('close', onClosed);
  client.resume();
  client.end();
  setTimeout(() => client.destroy(), DRAIN_MS).unref();
  return { destroy: () => client.destroy() };
}
