/**
 * How a daemon (the proxy, the gateway) stops: one registry of the servers each made, and
 * one drain of the connections each has open. Closing stops the listener, cuts at once
 * what has nothing to finish, lets the rest go on for a grace period, then cuts it too.
 */
import type { Server } from 'node:net';
import { invalidArg } from '../errors.js';
import * as v from '../validate.js';

/** Something a daemon keeps open: it can be cut, and may say it has nothing left to finish. */
export interface Drainable {
  destroy(): void;
  /** True when cutting it now loses nothing (an idle keep-alive connection). */
  idle?(): boolean;
}

/** The open connections of one daemon, and a wait for the moment none is left. */
export class Drain<T extends Drainable = Drainable> implements Iterable<T> {
  readonly #items = new Set<T>();
  #empty: (() => void) | undefined;

  add(item: T): void {
    this.#items.add(item);
  }

  delete(item: T): void {
    if (this.#items.delete(item) && this.#items.size === 0) this.#empty?.();
  }

  get size(): number {
    return this.#items.size;
  }

  [Symbol.iterator](): Iterator<T> {
    return this.#items[Symbol.iterator]();
  }

  /** Resolves once nothing is open (at once when nothing is). */
  empty(): Promise<void> {
    if (this.#items.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.#empty;
      this.#empty = () => {
        this.#empty = undefined;
        previous?.();
        resolve();
      };
    });
  }
}

/** What the drain helper needs of a daemon, beside its open connections. */
export interface Daemon {
  /** The function that made the server, for the error on a server it did not make. */
  readonly madeBy: string;
  readonly open: Drain;
  /** Called before anything closes (answers from now on say `Connection: close`, say). */
  stopping?(): void;
  /** Called when the grace period is over, before what is still open is cut. */
  cut?(): void;
  /** Called once everything is closed (a worker stopped, a log closed). */
  stopped?(): void | Promise<void>;
}

const daemons = new WeakMap<Server, Daemon>();

/** @internal Records the daemon behind a server, for {@link closeDaemon} and {@link daemonOf}. */
export function registerDaemon(server: Server, daemon: Daemon): void {
  daemons.set(server, daemon);
}

/** @internal The daemon `madeBy` made behind `server`, else ERR_SECPOLICY_INVALID_ARG. */
export function daemonOf<D extends Daemon>(server: Server, madeBy: string): D {
  const daemon = daemons.get(server);
  if (!daemon || daemon.madeBy !== madeBy) throw invalidArg('server', `a server made by ${madeBy}`, server);
  return daemon as D;
}

/**
 * @internal Stops the daemon behind `server`: no new connections, idle ones cut at once,
 * the others given `options.grace` ms (default 10000) and then cut. Resolves when all
 * of them are closed and the daemon's own `stopped()` is done.
 */
export async function closeDaemon(server: Server, madeBy: string, options: unknown): Promise<void> {
  const daemon = daemonOf(server, madeBy);
  const grace = v.grace('options.grace', v.options<{ grace?: number }>('options', options).grace, 10_000);
  daemon.stopping?.();
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  const drained = daemon.open.empty();
  for (const item of daemon.open) if (item.idle?.()) item.destroy();
  const timer = setTimeout(() => {
    daemon.cut?.();
    for (const item of daemon.open) item.destroy();
  }, grace);
  try {
    await Promise.all([closed, drained]);
  } finally {
    clearTimeout(timer);
  }
  await daemon.stopped?.();
}
