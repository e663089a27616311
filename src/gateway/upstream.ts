/**
 * The gateway's pool of keep-alive connections to its one upstream socket. http.Agent
 * does the same for any number of origins, and pays for that on every request: it copies
 * the request's options into a fresh object, works out an origin key (twice), looks the
 * host up as an IP address for TLS server names, and keeps per-origin arrays it deletes
 * and recreates as they empty. Here there is one origin, so a request takes the most
 * recently freed connection from a stack or opens a new one.
 *
 * What makes a connection reusable is still decided by http's client: it emits `free` on
 * a socket only after a complete response on a connection both sides keep alive, with
 * the request fully written; anything else (an upgrade, `Connection: close`, an error,
 * a response cut short) ends or destroys the socket and it never comes back here.
 */
import * as http from 'node:http';
import * as net from 'node:net';

/** How many idle connections are kept (as http.Agent's default maxFreeSockets). */
const MAX_FREE = 256;

/** A socket of the pool between two requests: the request that used it is done with it. */
type PooledSocket = net.Socket & { _httpMessage?: (http.ClientRequest & { res?: http.IncomingMessage | null }) | null };

/** An error on an idle connection (the upstream went away): it leaves the pool by closing. */
function onIdleError(this: net.Socket): void {
  this.destroy();
}

/** An idle connection whose upstream's keep-alive time is nearly over. */
function onIdleTimeout(this: net.Socket): void {
  this.destroy();
}

/** How much sooner than the upstream's stated keep-alive time an idle connection is closed, in ms. */
const KEEP_ALIVE_BUFFER = 1000;

/** The `timeout=N` of a response's Keep-Alive header, in ms, or undefined. */
export function keepAliveHint(raw: string[] | undefined): number | undefined {
  if (raw === undefined) return undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length !== 10 || raw[i]!.toLowerCase() !== 'keep-alive') continue;
    const m = /(?:^|[,;\s])timeout\s*=\s*(\d{1,9})(?:$|[,;\s])/i.exec(raw[i + 1]!);
    if (m) return Number(m[1]) * 1000;
  }
  return undefined;
}

/** An http.Agent for one UNIX socket. */
export class UpstreamPool extends http.Agent {
  readonly #path: string;
  readonly #free: PooledSocket[] = [];
  readonly #all = new Set<net.Socket>();
  #destroyed = false;

  constructor(path: string) {
    // keepAlive makes http's client keep the connection open and emit `free` when it may be reused.
    super({ keepAlive: true });
    this.#path = path;
  }

  /** Called by http.request(): gives the request a connection. */
  addRequest(req: http.ClientRequest): void {
    const free = this.#free;
    let socket: PooledSocket | undefined;
    while ((socket = free.pop()) !== undefined && socket.destroyed);
    if (socket !== undefined) {
      socket.removeListener('error', onIdleError);
      socket.removeListener('timeout', onIdleTimeout);
      if (socket.timeout) socket.setTimeout(0);
      socket.ref();
      req.reusedSocket = true;
    } else {
      socket = this.#connect();
    }
    (req as http.ClientRequest & { onSocket(socket: net.Socket): void }).onSocket(socket);
    // As http.Agent does: a request's `timeout` option is its socket's idle timeout while it runs.
    const timeout = (req as http.ClientRequest & { timeout?: number }).timeout;
    if (timeout !== undefined && timeout !== socket.timeout) socket.setTimeout(timeout);
  }

  #connect(): PooledSocket {
    const socket: PooledSocket = net.createConnection({ path: this.#path });
    this.#all.add(socket);
    socket.on('free', () => this.#release(socket));
    socket.once('close', () => this.#all.delete(socket));
    if (this.#destroyed) socket.destroy();
    return socket;
  }

  #release(socket: PooledSocket): void {
    if (this.#destroyed || !socket.writable || this.#free.length >= MAX_FREE || socket._httpMessage?.shouldKeepAlive === false)
      return void socket.destroy();
    // An upstream that says how long it keeps an idle connection (`Keep-Alive: timeout=N`,
    // as Node's servers do) would close it under a request sent at that moment: the pool
    // lets it go a second earlier, as http.Agent does on newer Node versions.
    const hint = keepAliveHint(socket._httpMessage?.res?.rawHeaders);
    if (hint !== undefined && hint <= KEEP_ALIVE_BUFFER) return void socket.destroy();
    socket._httpMessage = null;
    if (hint !== undefined) {
      socket.setTimeout(hint - KEEP_ALIVE_BUFFER);
      socket.once('timeout', onIdleTimeout);
    } else if (socket.timeout) socket.setTimeout(0);
    // Between requests nothing listens for errors on the socket but this.
    socket.once('error', onIdleError);
    // An idle upstream connection does not keep the process alive.
    socket.unref();
    this.#free.push(socket);
  }

  /** Closes every connection, idle or in use. */
  override destroy(): void {
    this.#destroyed = true;
    this.#free.length = 0;
    for (const socket of this.#all) socket.destroy();
  }
}
