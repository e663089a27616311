/**
 * What every part of a running gateway shares: its policy and upstream, the decision log,
 * the state closeGateway() works on, and per connection, the peer and what has been
 * worked out about it. Also the gateway's own answers (a JSON message), on an HTTP
 * response or on a raw socket.
 */
import type * as http from 'node:http';
import type * as net from 'node:net';
import type * as stream from 'node:stream';
import type { Peer } from '../identity/index.js';
import type { Daemon, Drain } from '../net/index.js';
import type { ContainerResolver } from './containers.js';
import type { ConnectionCount } from './count.js';
import type { DockerProfile } from './docker-request.js';
import type { GatewayMetrics } from './metrics.js';
import { logPeer, type GatewayLog, type GatewayLogEntry, type LogPeer, type LogSink } from './log.js';
import type { RequestPattern } from './pattern.js';
import type { ContainerInfo, GatewayPolicy, GatewayRule } from './policy.js';
import type { UpstreamPool } from './upstream.js';

/**
 * A running gateway. `policy` and what is derived from it (`audit`, `docker`, `profile`,
 * `key`, `needsNames`) change together on a reload; a request reads them once, when it is decided.
 */
export interface Gateway extends Daemon {
  policy: GatewayPolicy;
  /** The upstream's socket file. */
  readonly target: string;
  audit: boolean;
  /** `api: docker`. */
  docker: boolean;
  /** The Docker profile, with `api: docker`: what a rule with `docker:` limits lets through (made again by a reload). */
  profile: DockerProfile | undefined;
  /** The key that signs identity headers, when the policy names one. */
  key: Buffer | undefined;
  readonly log: GatewayLog | undefined;
  readonly sink: LogSink | undefined;
  /** Whether decisions are recorded at all (a log or metrics). */
  readonly recording: boolean;
  /** Log only the entries of denials. */
  readonly deniedOnly: boolean;
  /** The Prometheus metrics, when they are served. */
  readonly metrics: GatewayMetrics | undefined;
  readonly agent: UpstreamPool;
  readonly resolver: ContainerResolver;
  /** How long a container's Docker name (and a `who` that used it) holds, in ms. */
  readonly cacheMs: number;
  /** Whether some rule names containers by Docker name or label. */
  needsNames: boolean;
  /** Open client connections: idle while no request is in progress and nothing is upgraded. */
  readonly open: Drain<OpenConnection>;
  /** Open client connections per uid, for `limits.connectionsPerUid`: this process's, or its group's. */
  readonly count: ConnectionCount;
  /** closeGateway() was called. */
  closing: boolean;
}

/** A client connection as the drain sees it: its record. */
export type OpenConnection = Conn;

/**
 * Per connection: its peer and what has been worked out about it; for the drain, whether
 * it is idle. One object per connection, its methods shared.
 */
export class Conn {
  /** Per rule: whether `who` matched, and until when that holds (rules with Docker names expire). */
  who: Array<boolean | undefined>;
  /** The policy whose rules `who` and `whoUntil` are about (a reload starts them over). */
  whoOf: GatewayPolicy | undefined;
  whoUntil: number[];
  /** The peer's Docker container as last resolved (an Error when the lookup failed), for rules with Docker names. */
  container: ContainerInfo | Error | undefined = undefined;
  logPeer: LogPeer | undefined = undefined;
  /** Requests in progress. */
  active = 0;
  upgraded = false;
  /** The response to the latest request, until it closes. */
  res: http.ServerResponse | undefined = undefined;

  constructor(
    readonly gw: Gateway,
    readonly peer: Peer,
    /** The client's socket (none for a connection refused before it was served). */
    readonly socket?: net.Socket,
  ) {
    // Made for the running policy, `who` at its size (an empty array grows to 17 slots at its first element).
    const policy = gw.policy;
    this.whoOf = policy;
    this.who = new Array<boolean | undefined>(policy.rules.length);
    this.whoUntil = [];
  }

  destroy(): void {
    this.socket?.destroy();
  }

  /** An idle keep-alive connection has no request in progress and no stream: nothing to finish. */
  idle(): boolean {
    return this.active === 0 && !this.upgraded;
  }
}

/** A new connection record. */
export function newConn(gw: Gateway, peer: Peer, socket?: net.Socket): Conn {
  return new Conn(gw, peer, socket);
}

/**
 * Whether an answer has begun on a connection and not ended: its head produced and its
 * end not yet written (nothing else may be written on it then). An earlier response still
 * open under the latest one may have begun too.
 */
export function answering(conn: Conn): boolean {
  const res = conn.res;
  return res !== undefined && (conn.active > 1 || (res.headersSent && !res.writableFinished));
}

/** The outcome of the rules for one request. */
export interface Verdict {
  rule: GatewayRule | undefined;
  allowed: boolean;
  /** The pattern that decided, if one did. */
  pattern: RequestPattern | undefined;
  /** Why, for denials (allowed requests get their reason when logged). */
  why: string;
}

/** The peer of an entry that is only counted (metrics), never logged: nothing is read for it. */
const UNLOGGED_PEER: LogPeer = Object.freeze({ pid: 0, uid: -1, gid: -1, user: null, container: null, program: null });

/** A decision log entry; its peer is read only when the log will have it (see {@link record}). */
export function entry(
  conn: Conn,
  method: string | null,
  path: string | null,
  verdict: Verdict | undefined,
  reason: string,
  forwarded: boolean,
  status?: number | null,
): GatewayLogEntry {
  const gw = conn.gw;
  const logged = gw.log !== undefined && (!(verdict?.allowed ?? false) || !gw.deniedOnly);
  return {
    time: new Date().toISOString(),
    // Read from /proc (program, container) only for an entry the log will have, at its decision.
    peer: logged ? (conn.logPeer ??= logPeer(conn.peer, conn.container)) : UNLOGGED_PEER,
    method,
    path,
    rule: verdict?.rule?.name ?? null,
    allowed: verdict?.allowed ?? false,
    reason,
    mode: conn.gw.policy.mode,
    forwarded,
    // Set when the answer has ended (see settle()); in this order in every line.
    query: undefined,
    status,
    durationMs: undefined,
  };
}

/** Writes a finished entry: counted in the metrics, and logged (unless only denials are). */
export function record(gw: Gateway, e: GatewayLogEntry): void {
  gw.metrics?.observe(e);
  if (gw.log !== undefined && (!e.allowed || !gw.deniedOnly)) gw.log(e);
}

/** Where a request's arrival time and decision wait for its answer to end. */
const kStart = Symbol('start');
const kEntry = Symbol('entry');
const kConn = Symbol('conn');
type Noted = http.ServerResponse & { [kStart]?: number; [kEntry]?: GatewayLogEntry; [kConn]?: Conn };

/** The response to a connection's latest request (see {@link answering}). */
export function responding(conn: Conn, res: http.ServerResponse): void {
  conn.res = res;
  (res as Noted)[kConn] = conn;
}

/** A request has arrived: its duration counts from now. */
export function arrived(res: http.ServerResponse): void {
  (res as Noted)[kStart] = performance.now();
}

/**
 * The decision on a request: recorded when its answer has ended (see {@link settle}),
 * with the status sent and how long it took.
 */
export function note(res: http.ServerResponse, e: GatewayLogEntry): void {
  (res as Noted)[kEntry] = e;
}

/** The query of a request target, without its `?`; null when it has none. */
export function queryOf(url: string): string | null {
  const q = url.indexOf('?');
  return q === -1 || q === url.length - 1 ? null : url.slice(q + 1);
}

/** A request's answer has ended (sent, or cut): its decision is recorded now. */
export function settle(gw: Gateway, res: http.ServerResponse): void {
  const conn = (res as Noted)[kConn];
  if (conn !== undefined && conn.res === res) conn.res = undefined;
  const e = (res as Noted)[kEntry];
  if (e === undefined) return;
  (res as Noted)[kEntry] = undefined;
  e.query = queryOf(res.req?.url ?? '');
  e.status = res.headersSent ? res.statusCode : null;
  e.durationMs = elapsed((res as Noted)[kStart]);
  record(gw, e);
}

/** Milliseconds since `start` (from performance.now()), to the microsecond. */
export function elapsed(start: number | undefined): number {
  return start === undefined ? 0 : Math.round((performance.now() - start) * 1000) / 1000;
}

export const JSON_TYPE = 'application/json';

/** The gateway's own answer on an HTTP response: `{"message": ...}`. */
export function reply(gw: Gateway, res: http.ServerResponse, status: number, message: string, close = false): void {
  const body = JSON.stringify({ message });
  const headers: http.OutgoingHttpHeaders = { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(body) };
  if (close || gw.closing) headers.Connection = 'close';
  res.writeHead(status, headers).end(body);
}

/**
 * The gateway's own answer on a socket http has handed over (upgrade, CONNECT, a parse
 * error, a refused connection), then the socket closed: the peer's side is not waited
 * for, and a peer that does not read is cut after {@link LINGER_MS}.
 */
export function rawReply(socket: stream.Duplex, status: number, text: string, message: string): void {
  const body = JSON.stringify({ message });
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nContent-Type: ${JSON_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
  closeSoon(socket);
}

/** How long a closing connection may take to flush what the gateway wrote, in ms. */
export const LINGER_MS = 2000;

/** Closes a socket once what was written to it is flushed, and after {@link LINGER_MS} whatever the peer does. */
export function closeSoon(socket: stream.Duplex): void {
  if (socket.destroyed) return;
  if (socket.writableFinished) return void socket.destroy();
  socket.once('finish', () => socket.destroy());
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

/** The message of a denial. */
export function denial(verdict: Verdict): string {
  return `secpolicy: ${verdict.rule?.name ?? 'default'}: ${verdict.why}`;
}

/** The log reason of an allowed request. */
export function allowedReason(verdict: Verdict): string {
  return verdict.pattern ? `allowed by "${verdict.pattern.source}"` : 'allowed';
}
