/**
 * What every part of a running gateway shares: its policy and upstream, the decision log,
 * the state closeGateway() works on, and per connection, the peer and what has been
 * worked out about it. Also the gateway's own answers (a JSON message), on an HTTP
 * response or on a raw socket.
 */
import type http from 'node:http';
import type net from 'node:net';
import type { Peer } from '../identity/peer.js';
import type { ContainerResolver } from './containers.js';
import type { DockerProfile } from './docker-request.js';
import { logPeer, type GatewayLog, type GatewayLogEntry, type LogPeer, type LogSink } from './log.js';
import type { RequestPattern } from './pattern.js';
import type { GatewayPolicy, GatewayRule } from './policy.js';
import type { UpstreamPool } from './upstream.js';

/** A running gateway. */
export interface Gateway {
  readonly policy: GatewayPolicy;
  /** The upstream's socket file. */
  readonly target: string;
  readonly audit: boolean;
  /** `api: docker`. */
  readonly docker: boolean;
  /** The Docker profile, with `api: docker`: what a rule with `docker:` limits lets through. */
  readonly profile: DockerProfile | undefined;
  /** The key that signs identity headers, when the policy names one. */
  readonly key: Buffer | undefined;
  readonly log: GatewayLog | undefined;
  readonly sink: LogSink | undefined;
  readonly agent: UpstreamPool;
  readonly resolver: ContainerResolver;
  /** How long a container's Docker name (and a `who` that used it) holds, in ms. */
  readonly cacheMs: number;
  /** Whether some rule names containers by Docker name or label. */
  readonly needsNames: boolean;
  /** Open client connections. */
  readonly sockets: Set<net.Socket>;
  /** Open client connections per uid, for `limits.connectionsPerUid`. */
  readonly perUid: Map<number, number>;
  /** closeGateway() was called. */
  closing: boolean;
  /** Called once the last connection is gone while closing. */
  drained?: () => void;
}

/** Per connection: its peer and what has been worked out about it. */
export interface Conn {
  gw: Gateway;
  peer: Peer;
  /** Per rule: whether `who` matched, and until when that holds (rules with Docker names expire). */
  who: Array<boolean | undefined>;
  whoUntil: number[];
  logPeer: LogPeer | undefined;
  /** Requests in progress. */
  active: number;
  upgraded: boolean;
}

/** A new connection record. */
export function newConn(gw: Gateway, peer: Peer): Conn {
  return { gw, peer, who: [], whoUntil: [], logPeer: undefined, active: 0, upgraded: false };
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

/** A decision log entry. */
export function entry(
  conn: Conn,
  method: string | null,
  path: string | null,
  verdict: Verdict | undefined,
  reason: string,
  forwarded: boolean,
  status?: number,
): GatewayLogEntry {
  return {
    time: new Date().toISOString(),
    peer: (conn.logPeer ??= logPeer(conn.peer)),
    method,
    path,
    rule: verdict?.rule?.name ?? null,
    allowed: verdict?.allowed ?? false,
    reason,
    mode: conn.gw.policy.mode,
    forwarded,
    ...(status !== undefined && { status }),
  };
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
export function rawReply(socket: net.Socket, status: number, text: string, message: string): void {
  const body = JSON.stringify({ message });
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nContent-Type: ${JSON_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
  closeSoon(socket);
}

/** How long a closing connection may take to flush what the gateway wrote, in ms. */
export const LINGER_MS = 2000;

/** Closes a socket once what was written to it is flushed, and after {@link LINGER_MS} whatever the peer does. */
export function closeSoon(socket: net.Socket): void {
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
