/**
 * createGateway(): an HTTP reverse proxy on a UNIX socket that decides every request by
 * who sent it. Connections are accepted by the verified server (the peer is read from
 * the kernel once per connection, and the optional `connect` policy applied before any
 * byte is parsed); each request on a connection is then decided on its own by the rules
 * (decide.ts), on the canonical form of its path (path.ts), and forwarded (forward.ts),
 * with an inspected body forwarded only as the exact bytes that were checked (body.ts).
 * Upgraded streams are spliced both ways once allowed (upgrade.ts). This file wires the
 * pieces to the sockets and stops them.
 */
import * as http from 'node:http';
import type * as net from 'node:net';
import type * as stream from 'node:stream';
import { invalidArg, type SecpolicyError } from '../errors.js';
import { createServer } from '../net/index.js';
import { listenAt, listenTarget } from '../systemd/index.js';
import { knownPeer, Policy, type Decision } from '../policy/index.js';
import * as v from '../validate.js';
import { ContainerResolver, prepare } from './containers.js';
import { LocalCount, type ConnectionCount, type Taken } from './count.js';
import { answering, entry, newConn, rawReply, record, responding, type Conn, type Gateway } from './context.js';
import { upstreamGet } from './docker-effective.js';
import { track } from './forward.js';
import { logSink, type GatewayLog, type LogSink } from './log.js';
import { GatewayMetrics, serveMetrics } from './metrics.js';
import type { Registry } from 'prom-client';
import { isGatewayPolicy, type GatewayPolicy } from './policy.js';
import { derive, MADE_BY } from './reload.js';
import { closeDaemon, Drain, registerDaemon } from '../net/index.js';
import { safely } from './request.js';
import { upgrade } from './upgrade.js';
import { UpstreamPool } from './upstream.js';

/** Options of {@link createGateway}. */
export interface GatewayOptions {
  /**
   * The socket file the gateway listens on (created safely, see `listen()`), or `{ fd }`:
   * a listening socket the process inherited, such as one from `systemdSockets()`.
   */
  listen: string | { fd: number };
  /** The socket file of the HTTP service behind it (the Docker daemon's, for `api: docker`). */
  target: string;
  /** From {@link loadGatewayPolicy} or {@link parseGatewayPolicy}. */
  policy: GatewayPolicy;
  /** Mode of the socket file. @default 0o600 */
  mode?: number;
  /** The decision log: a function called with each entry, `-` for stdout, or a file appended to. */
  log?: string | GatewayLog;
  /** Bound on verifying one connection, in ms. @default 5000 */
  handshakeTimeout?: number;
  /** How long a container's Docker name and labels are cached, in ms. @default 3000 */
  containerCacheMs?: number;
  /** Use a socket directory others could write to (see `listen()`). @default false */
  allowInsecureDirectory?: boolean;
  /** Owner of the socket file (user name or uid), as `listen()` applies it: before anyone can connect. */
  owner?: string | number;
  /** Group of the socket file (group name or gid), as `listen()` applies it: before anyone can connect. */
  group?: string | number;
  /** Log only denials (and, in audit mode, what would have been denied). @default false */
  logDeniedOnly?: boolean;
  /** A socket file to serve Prometheus metrics on (`GET /metrics`), created like `listen`. */
  metrics?: string;
  /** Mode of the metrics socket file. @default 0o600 */
  metricsMode?: number;
}

/**
 * Listens on `options.listen` and forwards the requests the policy allows to
 * `options.target`. Resolves with the listening server once the socket file exists; stop
 * it with {@link closeGateway}. The server emits `'denied'` for connections refused by
 * the `connect` policy, like createServer's.
 */
export async function createGateway(options: GatewayOptions): Promise<net.Server> {
  return openGateway(options, {});
}

/** @internal What a gateway process of a group (`secpolicy gateway --workers`) adds to its options. */
export interface GatewayInternals {
  /** Count the metrics without serving them: the group's first process serves everyone's. */
  countMetrics?: boolean;
  /** What the metrics socket answers, given this process's registry (the group adds its other processes'). */
  metricsText?: (own: Registry) => Promise<string>;
  /** Where the decision log goes instead of `options.log` (a group's other processes send stdout's lines to the first). */
  sink?: LogSink;
  /** Where connections per uid are counted instead of in this process (a group's first process counts for all). */
  count?: ConnectionCount;
}

/** @internal {@link createGateway} with what a process of a group needs besides its options. */
export async function openGateway(options: GatewayOptions, internals: GatewayInternals): Promise<net.Server> {
  const o = v.options<GatewayOptions>('options', options);
  const where = listenTarget('options.listen', o.listen);
  if (!v.isName(o.target)) throw invalidArg('options.target', 'a socket file path', o.target);
  if (!isGatewayPolicy(o.policy))
    throw invalidArg('options.policy', 'a GatewayPolicy (from loadGatewayPolicy or parseGatewayPolicy)', o.policy);
  const mode = v.mode('options.mode', o.mode ?? 0o600);
  const cacheMs = o.containerCacheMs ?? 3000;
  if (typeof cacheMs !== 'number' || !(cacheMs >= 0) || cacheMs > 3_600_000)
    throw invalidArg('options.containerCacheMs', 'a number of ms from 0 to 3600000', cacheMs);
  if (o.metrics !== undefined && !v.isName(o.metrics)) throw invalidArg('options.metrics', 'a socket file path', o.metrics);
  const metricsMode = v.mode('options.metricsMode', o.metricsMode ?? 0o600);
  const policy = o.policy;
  const target = o.target;
  const audit = policy.mode === 'audit';
  const agent = new UpstreamPool(target);
  const derived = derive(policy, upstreamGet(agent, target));
  const sink = internals.sink ?? logSink(o.log);
  const log = sink?.write;
  const metrics = o.metrics === undefined && internals.countMetrics !== true ? undefined : new GatewayMetrics();
  const gw: Gateway = {
    ...derived,
    target,
    log,
    sink,
    recording: log !== undefined || metrics !== undefined,
    deniedOnly: o.logDeniedOnly === true,
    metrics,
    agent,
    resolver: new ContainerResolver(agent, target, cacheMs),
    cacheMs,
    madeBy: MADE_BY,
    open: new Drain(),
    count: internals.count ?? new LocalCount(),
    closing: false,
    stopping(): void {
      this.closing = true;
    },
    async stopped(): Promise<void> {
      // The last answers' entries are recorded as their responses close, just after their sockets.
      await new Promise((resolve) => setImmediate(resolve));
      this.sink?.close();
    },
  };
  const limits = policy.limits;
  const conns = new WeakMap<net.Socket, Conn>();

  // ---- the servers -------------------------------------------------------------------

  // Every connection is bounded: its head, its whole request, and its wait for the next
  // one. http checks the first two every connectionsCheckingInterval, so that interval
  // is kept well under the head's bound.
  const httpServer = http.createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.idleTimeoutMs,
      connectionsCheckingInterval: Math.max(25, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
      insecureHTTPParser: false,
    },
    (req, res) => {
      const conn = conns.get(req.socket)!;
      responding(conn, res);
      track(res, conn);
      if (gw.closing) res.shouldKeepAlive = false;
      const pending = prepare(conn);
      if (pending === undefined) return safely(req, res, conn);
      req.pause();
      pending.then(
        () => {
          req.resume();
          safely(req, res, conn);
        },
        () => res.destroy(),
      );
    },
  );
  httpServer.on('upgrade', (req: http.IncomingMessage, socket: stream.Duplex, head: Buffer) => {
    // http has handed the socket over with its error listener removed: a reset must not crash us.
    socket.on('error', () => socket.destroy());
    // The connection is the request's socket: newer Node hands an upgrade that carries a body
    // over as a stream wrapping it (the body's bytes first), not as the socket itself.
    const conn = conns.get(req.socket as net.Socket);
    if (conn === undefined) return void socket.destroy();
    const pending = prepare(conn);
    const go = (): void => {
      try {
        upgrade(req, socket, head, conn);
      } catch (e) {
        // As for a request (safely()): an unexpected failure is a 500 for this request only.
        if (socket.writable && !conn.upgraded)
          rawReply(socket, 500, 'Internal Server Error', `secpolicy: internal error: ${(e as Error)?.message}`);
        else socket.destroy();
      }
    };
    if (pending === undefined) return go();
    pending.then(go, () => socket.destroy());
  });
  httpServer.on('connect', (req: http.IncomingMessage, socket: net.Socket) => {
    socket.on('error', () => socket.destroy());
    const conn = conns.get(req.socket as net.Socket);
    if (conn && gw.recording)
      record(gw, {
        ...entry(conn, req.method!, req.url!, undefined, 'authority-form (CONNECT) targets are not served', false, 400),
        durationMs: 0,
      });
    rawReply(socket, 400, 'Bad Request', 'secpolicy: bad request: CONNECT is not served');
  });
  httpServer.on('clientError', (error: NodeJS.ErrnoException, socket: net.Socket) => {
    // A response already under way (a body cut off after its answer began) cannot be followed by another.
    const conn = conns.get(socket);
    if (!socket.writable || (conn !== undefined && answering(conn)) || error.code === 'ECONNRESET') return void socket.destroy();
    if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT')
      return rawReply(socket, 408, 'Request Timeout', 'secpolicy: the request did not arrive in time');
    const large = error.code === 'HPE_HEADER_OVERFLOW';
    rawReply(
      socket,
      large ? 431 : 400,
      large ? 'Request Header Fields Too Large' : 'Bad Request',
      `secpolicy: bad request: ${large ? 'headers too large' : 'not valid HTTP/1.1'}`,
    );
  });
  // A client that shuts its write side down after its requests still gets every answer.
  // (http.Server's own switch, set by its constructor: no option sets it, and without it the
  // server ends the connection at the client's FIN, before the answers are written.)
  (httpServer as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  // The http server never listens itself; this starts its header timeout checks.
  httpServer.emit('listening');

  /** A client connection has closed: it no longer counts (one listener function for every connection). */
  function closed(this: net.Socket): void {
    const conn = conns.get(this)!;
    metrics?.connections.dec();
    gw.count.give(conn.peer.uid);
    gw.open.delete(conn);
  }

  /** A verified connection whose place is counted (or refused): served, or answered 503 and closed. */
  function admit(socket: net.Socket, conn: Conn, taken: Taken): void {
    const uid = conn.peer.uid;
    // Gone, or the gateway closing, while its place was asked for: a place taken goes back.
    if (socket.destroyed || gw.closing) {
      if (taken.ok) gw.count.give(uid);
      return void socket.destroy();
    }
    if (!taken.ok) {
      const why = `uid ${uid} has ${taken.open} connections open, the most limits.connectionsPerUid allows`;
      if (gw.recording) record(gw, entry(conn, null, null, undefined, why, false, 503));
      return rawReply(socket, 503, 'Service Unavailable', `secpolicy: ${why}`);
    }
    conns.set(socket, conn);
    gw.open.add(conn);
    metrics?.connections.inc();
    socket.on('close', closed);
    httpServer.emit('connection', socket);
  }

  const connectPolicy = policy.connect;
  const server = createServer(
    {
      policy: audit || !connectPolicy ? new Policy() : connectPolicy,
      allowHalfOpen: true,
      ...(o.handshakeTimeout !== undefined && { handshakeTimeout: o.handshakeTimeout }),
    },
    (socket, peer) => {
      if (gw.closing) return void socket.destroy();
      const conn = newConn(gw, peer, socket);
      if (audit && connectPolicy) {
        let allowed = false;
        let why: string;
        try {
          const d = connectPolicy.applySync(socket, { [knownPeer]: peer } as object);
          allowed = d.allowed;
          why = d.failures.map((f) => f.message).join('; ');
        } catch (e) {
          why = (e as Error).message;
        }
        if (!allowed && gw.recording) record(gw, entry(conn, null, null, undefined, `connect policy: ${why}`, true));
      }
      // The cap is the running policy's (a reload changes it; the timeouts above stay the start's).
      // Every connection is counted, so that a reload that sets a cap finds the count right.
      const taken = gw.count.take(peer.uid, gw.policy.limits.connectionsPerUid);
      if (!(taken instanceof Promise)) return admit(socket, conn, taken);
      // Counted by the group's first process: what the client sends meanwhile waits in the socket.
      taken.then(
        (t) => admit(socket, conn, t),
        () => socket.destroy(),
      );
    },
  );
  server.on('denied', (reason: Decision | SecpolicyError) => {
    if (!gw.recording) return;
    if ('allowed' in reason) {
      const conn = newConn(gw, reason.peer);
      record(gw, entry(conn, null, null, undefined, `connect policy: ${reason.failures.map((f) => f.message).join('; ')}`, false));
    }
  });
  let metricsServer: http.Server | undefined;
  server.on('close', () => {
    httpServer.close();
    agent.destroy();
    metricsServer?.close();
    metricsServer?.closeAllConnections();
  });
  registerDaemon(server, gw);
  try {
    // The metrics socket first: once the gateway's socket exists, both are served.
    if (metrics && o.metrics !== undefined) {
      const own = metrics.registry;
      const text = internals.metricsText === undefined ? () => own.metrics() : () => internals.metricsText!(own);
      metricsServer = await serveMetrics(text, own.contentType, o.metrics, metricsMode, o.allowInsecureDirectory);
    }
    await listenAt(server, where, {
      mode,
      ...(o.allowInsecureDirectory !== undefined && { allowInsecureDirectory: o.allowInsecureDirectory }),
      ...(o.owner !== undefined && { owner: o.owner }),
      ...(o.group !== undefined && { group: o.group }),
    });
  } catch (e) {
    sink?.close();
    agent.destroy();
    httpServer.close();
    metricsServer?.close();
    throw e;
  }
  // Out of descriptors, or a connection gone before it was accepted: that connection is
  // lost, not the gateway.
  server.on('error', (e: NodeJS.ErrnoException) => {
    if (e.syscall !== 'accept') throw e;
  });
  return server;
}

/** Options of {@link closeGateway}. */
export interface CloseGatewayOptions {
  /** How long requests and streams in progress may go on before they are cut, in ms. @default 10000 */
  grace?: number;
}

/**
 * Stops a gateway: no new connections, the socket file removed, idle keep-alive
 * connections closed, requests in progress finished (their responses say
 * `Connection: close`), and whatever is still open after `grace` ms cut.
 */
export async function closeGateway(server: net.Server, options?: CloseGatewayOptions): Promise<void> {
  await closeDaemon(server, MADE_BY, options);
}
