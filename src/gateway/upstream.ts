/**
 * The gateway's pool of keep-alive connections to its one upstream socket: an http.Agent
 * that uses only the methods Node documents for a subclass to override (`createConnection`,
 * `keepSocketAlive`, `reuseSocket`, `getName`) and its documented options (`keepAlive`;
 * `maxFreeSockets` 256 and `scheduling` 'lifo' are the defaults).
 *
 * What makes a connection reusable is decided by http's client and the Agent: a socket
 * comes back only after a complete response, read to its end, on a connection both sides
 * keep alive (an upstream's `Connection: close` ends it), with the request fully written;
 * anything else (an upgrade, an error, a response cut short) ends or destroys the socket.
 * The Agent keeps at most 256 idle ones, the most recently freed used first, and closes
 * an idle one that errs or times out. What is added here: an upstream that states how long
 * it keeps an idle connection (`Keep-Alive: timeout=N`) has its connections let go a second
 * sooner, idle connections do not keep the process alive, and once destroyed the pool
 * opens nothing new. (The Agent copies each request's options into an object of its own:
 * about 3 KB and a few µs per request that a pool of its own would not spend.)
 *
 * The Keep-Alive header of the response a connection last carried is read from the
 * documented `http.client.response.finish` diagnostics channel, which names the request
 * (and so its socket) with its response; it is subscribed while a pool exists.
 */
import * as dc from 'node:diagnostics_channel';
import * as http from 'node:http';
import * as net from 'node:net';

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

/** Per connection of a pool: the keep-alive time its last response stated, in ms (-1 if none). */
const hints = new WeakMap<net.Socket, number>();

const RESPONSE = 'http.client.response.finish';
let pools = 0;

/** Every response of an http client in this process; those of a pool's connections are looked at. */
function onResponse(message: unknown): void {
  const { request, response } = message as { request: http.ClientRequest; response: http.IncomingMessage };
  const socket = request.socket;
  if (socket === null || !hints.has(socket)) return;
  hints.set(socket, keepAliveHint(response.rawHeaders) ?? -1);
}

/** An http.Agent for one UNIX socket. */
export class UpstreamPool extends http.Agent {
  readonly #path: string;
  #destroyed = false;

  constructor(path: string) {
    // maxFreeSockets (256) and scheduling ('lifo') are the Agent's defaults; every option here
    // is copied into each request's options, so none is given twice. A UNIX socket has no
    // TLS server name: an empty one saves the Agent working one out for every request.
    super({ keepAlive: true, servername: '' } as http.AgentOptions);
    this.#path = path;
    if (pools++ === 0) dc.subscribe(RESPONSE, onResponse);
  }

  /** The key of the Agent's lists of connections: one upstream, one key (the Agent builds it from host, port and path). */
  override getName(): string {
    return '';
  }

  /** A new connection to the upstream, whatever the request's options say. */
  override createConnection(): net.Socket {
    const socket = net.createConnection({ path: this.#path });
    hints.set(socket, -1);
    if (this.#destroyed) socket.destroy();
    return socket;
  }

  /**
   * A connection whose request and response are complete, before it joins the idle ones:
   * false closes it instead. An upstream that states its keep-alive time (as Node's
   * servers do) would close the connection under a request sent at that moment: it is let
   * go a second earlier, or not kept at all when that time is a second or less.
   */
  override keepSocketAlive(socket: net.Socket): boolean {
    if (this.#destroyed) return false;
    const hint = hints.get(socket) ?? -1;
    if (hint !== -1 && hint <= KEEP_ALIVE_BUFFER) return false;
    // The Agent closes an idle connection that times out.
    const idle = hint === -1 ? 0 : hint - KEEP_ALIVE_BUFFER;
    if (socket.timeout !== idle) socket.setTimeout(idle);
    // An idle upstream connection does not keep the process alive.
    socket.unref();
    return true;
  }

  /** An idle connection taken for `request`: its idle timeout goes (the request's own `timeout` is applied after). */
  override reuseSocket(socket: net.Socket, request: http.ClientRequest): void {
    super.reuseSocket(socket, request);
    if (socket.timeout) socket.setTimeout(0);
  }

  /** Closes every connection, idle or in use; no new one is opened. */
  override destroy(): void {
    if (!this.#destroyed && --pools === 0) dc.unsubscribe(RESPONSE, onResponse);
    this.#destroyed = true;
    super.destroy();
  }
}
