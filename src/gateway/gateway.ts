/**
 * createGateway(): an HTTP reverse proxy on a UNIX socket that decides every request by
 * who sent it. Connections are accepted by the verified server (the peer is read from
 * the kernel once per connection, and the optional `connect` policy applied before any
 * byte is parsed); each request on a connection is then decided on its own by the rules,
 * on the canonical form of its path, and an inspected body is forwarded only as the
 * exact bytes that were checked. Upgraded (hijacked) streams are spliced both ways once
 * allowed; the upstream connection of a stream is never pooled.
 */
import http from 'node:http';
import net from 'node:net';
import { invalidArg, type SecpolicyError } from '../errors.js';
import type { Peer } from '../identity/peer.js';
import { readKeyFile } from '../challenge/key-file.js';
import { createServer } from '../net/index.js';
import { listenAt, listenTarget } from '../systemd/listeners.js';
import { knownPeer, Policy, type Decision } from '../policy/policy.js';
import * as v from '../policy/validate.js';
import type { Refusal } from './docker.js';
import { upstreamGet } from './docker-effective.js';
import { DockerProfile, type DockerRoute } from './docker-request.js';
import { identityValues, sign } from './identity.js';
import { logPeer, logSink, type GatewayLog, type GatewayLogEntry, type LogPeer, type LogSink } from './log.js';
import { canonicalTarget, dockerPath, type CanonicalTarget } from './path.js';
import { isGatewayPolicy, resolvedContainers, type ContainerInfo, type GatewayPolicy, type GatewayRule } from './policy.js';
import type { RequestPattern } from './pattern.js';
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
}

/** Per connection: its peer and what has been worked out about it. */
interface Conn {
  peer: Peer;
  /** Per rule: whether `who` matched, and until when that holds (rules with Docker names expire). */
  who: Array<boolean | undefined>;
  whoUntil: number[];
  logPeer: LogPeer | undefined;
  active: number;
  upgraded: boolean;
}

/** The outcome of the rules for one request. */
interface Verdict {
  rule: GatewayRule | undefined;
  allowed: boolean;
  /** The pattern that decided, if one did. */
  pattern: RequestPattern | undefined;
  /** Why, for denials (allowed requests get their reason when logged). */
  why: string;
}

/** The state of a running gateway, for closeGateway(). */
interface State {
  sockets: Set<net.Socket>;
  closing: boolean;
  drained?: () => void;
  agent: http.Agent;
  sink: LogSink | undefined;
}

const gateways = new WeakMap<net.Server, State>();

/** Hop-by-hop headers (RFC 9110 7.6.1) and those the gateway sets itself. */
const HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'expect',
]);
const RESPONSE_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

const JSON_HEADERS = 'application/json';

/** Where a forwarded request's pieces find each other, without a closure per request. */
const kDownstream = Symbol('downstream');
const kUpstream = Symbol('upstream');
const kConn = Symbol('conn');
type Upstream = http.ClientRequest & { [kDownstream]: http.ServerResponse };
type UpstreamResponse = http.IncomingMessage & { [kDownstream]: http.ServerResponse };
type Downstream = http.ServerResponse & { [kUpstream]?: http.ClientRequest; [kConn]: Conn };

/** The upstream's body to the client, with backpressure (what pipe() does, for two streams that stay paired). */
function relayData(this: UpstreamResponse, chunk: Buffer): void {
  const res = this[kDownstream];
  if (res.destroyed) return;
  if (!res.write(chunk)) {
    this.pause();
    res.once('drain', () => this.resume());
  }
}

function relayEnd(this: UpstreamResponse): void {
  const res = this[kDownstream];
  if (!res.destroyed) res.end();
}

function relayError(this: UpstreamResponse): void {
  this[kDownstream].destroy();
}

/**
 * Header names a Connection header lists, lower case (removed before forwarding), or
 * undefined when it names none but the hop-by-hop `keep-alive` and `close`.
 */
function connectionListed(value: string | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  const v = value.toLowerCase();
  if (v === 'keep-alive' || v === 'close') return undefined;
  return new Set(v.split(',').map((s) => s.trim()));
}

/**
 * Listens on `options.listen` and forwards the requests the policy allows to
 * `options.target`. Resolves with the listening server once the socket file exists; stop
 * it with {@link closeGateway}. The server emits `'denied'` for connections refused by
 * the `connect` policy, like createServer's.
 */
export async function createGateway(options: GatewayOptions): Promise<net.Server> {
  const o = v.options<GatewayOptions>('options', options);
  const where = listenTarget('options.listen', o.listen);
  if (!v.isName(o.target)) throw invalidArg('options.target', 'a socket file path', o.target);
  if (!isGatewayPolicy(o.policy))
    throw invalidArg('options.policy', 'a GatewayPolicy (from loadGatewayPolicy or parseGatewayPolicy)', o.policy);
  const mode = v.mode('options.mode', o.mode ?? 0o600);
  const cacheMs = o.containerCacheMs ?? 3000;
  if (typeof cacheMs !== 'number' || !(cacheMs >= 0) || cacheMs > 3_600_000)
    throw invalidArg('options.containerCacheMs', 'a number of ms from 0 to 3600000', cacheMs);
  const policy = o.policy;
  const target = o.target;
  const audit = policy.mode === 'audit';
  const docker = policy.api === 'docker';
  const key = policy.forward.signKeyFile === undefined ? undefined : readKeyFile(policy.forward.signKeyFile);
  const sink = logSink(o.log);
  const log = sink?.write;
  const agent = new UpstreamPool(target);
  const state: State = { sockets: new Set(), closing: false, agent, sink };
  const conns = new WeakMap<net.Socket, Conn>();
  const resolver = new ContainerResolver(agent, target, cacheMs);
  const needsNames = policy.rules.some((r) => r.dockerNames);
  const profile = docker ? new DockerProfile(upstreamGet(agent, target)) : undefined;

  const entry = (
    conn: Conn,
    method: string | null,
    path: string | null,
    verdict: Verdict | undefined,
    reason: string,
    forwarded: boolean,
    status?: number,
  ): GatewayLogEntry => ({
    time: new Date().toISOString(),
    peer: (conn.logPeer ??= logPeer(conn.peer)),
    method,
    path,
    rule: verdict?.rule?.name ?? null,
    allowed: verdict?.allowed ?? false,
    reason,
    mode: policy.mode,
    forwarded,
    ...(status !== undefined && { status }),
  });

  // ---- the rules ---------------------------------------------------------------------

  const whoMatches = (conn: Conn, i: number, rule: GatewayRule, now: number): boolean => {
    if (rule.who === undefined) return true;
    const cached = conn.who[i];
    if (cached !== undefined && (!rule.dockerNames || now < conn.whoUntil[i]!)) return cached;
    let matched: boolean;
    try {
      // An unknown attribute throws: it never matches, whatever `not` or `anyOf` around it says.
      matched = rule.who.applySync(null as unknown as net.Socket, { [knownPeer]: conn.peer } as object).allowed;
    } catch {
      matched = false;
    }
    conn.who[i] = matched;
    if (rule.dockerNames) conn.whoUntil[i] = now + cacheMs;
    return matched;
  };

  const decide = (conn: Conn, method: string, path: string): Verdict => {
    const now = needsNames ? Date.now() : 0;
    const rules = policy.rules;
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i]!;
      if (!whoMatches(conn, i, rule, now)) continue;
      for (const p of rule.deny) {
        if ((p.method === '*' || p.method === method) && p.test(path))
          return { rule, allowed: false, pattern: p, why: `${method} ${path} is denied by "${p.source}"` };
      }
      for (const p of rule.allow) {
        if ((p.method === '*' || p.method === method) && p.test(path)) return { rule, allowed: true, pattern: p, why: '' };
      }
      return { rule, allowed: false, pattern: undefined, why: `${method} ${path} is not allowed` };
    }
    return { rule: undefined, allowed: false, pattern: undefined, why: 'no rule matches this peer' };
  };

  /** Resolves the peer's container through the Docker API when a rule needs its name. */
  const prepare = (conn: Conn): Promise<void> | undefined => {
    if (!needsNames) return undefined;
    const c = conn.peer.attempt('container');
    if (!c.ok || c.value === null) return undefined;
    const container = c.value as { runtime: string; id: string };
    const cached = resolver.cached(container);
    if (cached !== undefined) {
      resolvedContainers.set(conn.peer, cached);
      return undefined;
    }
    return resolver.resolve(container).then((info) => void resolvedContainers.set(conn.peer, info));
  };

  // ---- answers ---------------------------------------------------------------------------

  const reply = (res: http.ServerResponse, status: number, message: string, close = false): void => {
    const body = JSON.stringify({ message });
    const headers: http.OutgoingHttpHeaders = { 'Content-Type': JSON_HEADERS, 'Content-Length': Buffer.byteLength(body) };
    if (close || state.closing) headers.Connection = 'close';
    res.writeHead(status, headers).end(body);
  };

  const denial = (verdict: Verdict): string => `secpolicy: ${verdict.rule?.name ?? 'default'}: ${verdict.why}`;

  const allowedReason = (verdict: Verdict): string => (verdict.pattern ? `allowed by "${verdict.pattern.source}"` : 'allowed');

  /** The request headers to forward: hop-by-hop and client X-Secpolicy-* removed, identity added. */
  const forwardHeaders = (
    req: http.IncomingMessage,
    conn: Conn,
    verdict: Verdict,
    method: string,
    forwardTarget: string,
    upgrade: boolean,
  ): string[] => {
    const raw = req.rawHeaders;
    const out: string[] = [];
    const listed = connectionListed(req.headers.connection);
    let host = false;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      const lower = name.toLowerCase();
      if (HOP.has(lower) || lower.startsWith('x-secpolicy-') || listed?.has(lower)) continue;
      if (lower === 'host') host = true;
      out.push(name, raw[i + 1]!);
    }
    if (!host) out.push('Host', 'localhost');
    if (upgrade) out.push('Connection', 'Upgrade', 'Upgrade', req.headers.upgrade ?? 'tcp');
    if (policy.forward.identity) {
      const values = identityValues(conn.peer, verdict.rule?.name);
      const signature = key === undefined ? undefined : sign(key, method, forwardTarget, values);
      out.push('X-Secpolicy-Uid', values.uid, 'X-Secpolicy-Gid', values.gid);
      if (values.user !== undefined) out.push('X-Secpolicy-User', values.user);
      out.push('X-Secpolicy-Groups', values.groups, 'X-Secpolicy-Pid', values.pid);
      if (values.container !== undefined) out.push('X-Secpolicy-Container', values.container);
      if (values.rule !== undefined) out.push('X-Secpolicy-Rule', values.rule);
      if (signature !== undefined)
        out.push('X-Secpolicy-Timestamp', values.timestamp!, 'X-Secpolicy-Nonce', values.nonce!, 'X-Secpolicy-Signature', signature);
    }
    return out;
  };

  const responseHeaders = (raw: string[]): string[] => {
    const out: string[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      if (!RESPONSE_HOP.has(raw[i]!.toLowerCase())) out.push(raw[i]!, raw[i + 1]!);
    }
    if (state.closing) out.push('Connection', 'close');
    return out;
  };

  /**
   * Sends the request upstream. `body` is the exact bytes that were checked; `prefix` the
   * part of a body already read (audit mode past the bound) before the rest is piped.
   */
  const forward = (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    conn: Conn,
    t: CanonicalTarget,
    verdict: Verdict,
    body?: Buffer,
    prefix?: Buffer[],
  ): void => {
    const method = req.method!;
    const path = t.forward + t.query;
    const headers = forwardHeaders(req, conn, verdict, method, path, false);
    // Framed as it was read: a request with neither Content-Length nor Transfer-Encoding has no body.
    let bodiless = false;
    if (body !== undefined) headers.push('Content-Length', String(body.length));
    else if (req.headers['content-length'] !== undefined) headers.push('Content-Length', req.headers['content-length']);
    else if (req.headers['transfer-encoding'] !== undefined) headers.push('Transfer-Encoding', 'chunked');
    else {
      bodiless = prefix === undefined;
      if (method !== 'GET' && method !== 'HEAD') headers.push('Content-Length', '0');
    }
    const up = http.request({
      agent,
      socketPath: target,
      method,
      path,
      headers,
      setHost: false,
      insecureHTTPParser: false,
    } as http.RequestOptions);
    (up as Upstream)[kDownstream] = res;
    (res as Downstream)[kUpstream] = up;
    up.on('response', onUpstreamResponse);
    up.on('error', onUpstreamError);
    if (body !== undefined) up.end(body);
    else if (bodiless) up.end();
    else {
      for (const chunk of prefix ?? []) up.write(chunk);
      req.pipe(up);
    }
  };

  /** The upstream's answer: its head at once (without hop-by-hop headers), then its body as it comes. */
  function onUpstreamResponse(this: Upstream, ures: http.IncomingMessage): void {
    const res = this[kDownstream];
    const raw = ures.rawHeaders;
    const out: string[] = [];
    let length = false;
    for (let i = 0; i < raw.length; i += 2) {
      const lower = raw[i]!.toLowerCase();
      if (RESPONSE_HOP.has(lower)) continue;
      if (lower === 'content-length') length = true;
      out.push(raw[i]!, raw[i + 1]!);
    }
    if (state.closing) out.push('Connection', 'close');
    res.writeHead(ures.statusCode!, ures.statusMessage, out);
    // A response of unknown length is a stream (container wait, logs -f, events): its
    // head goes out at once, as the daemon sent it, since clients wait for it before the
    // body (docker run starts the container only once the wait's head has arrived).
    if (!length) res.flushHeaders();
    (ures as UpstreamResponse)[kDownstream] = res;
    ures.on('data', relayData);
    ures.on('end', relayEnd);
    ures.on('error', relayError);
  }

  function onUpstreamError(this: Upstream, error: Error): void {
    const res = this[kDownstream];
    if (!res.headersSent)
      reply(res, 502, `secpolicy: the upstream is unavailable (${(error as NodeJS.ErrnoException).code ?? error.message})`, true);
    else res.destroy();
  }

  /** Reads an inspected body (bounded), checks it, then forwards or refuses it. */
  const inspect = (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    conn: Conn,
    t: CanonicalTarget,
    path: string,
    verdict: Verdict,
    route: DockerRoute & { refuse?: undefined },
  ): void => {
    const method = req.method!;
    const max = policy.maxBodyBytes;
    const endpoint = route.label;
    const declared = req.headers['content-length'];
    const chunks: Buffer[] = [];
    let size = 0;
    const tooLarge = (): void => {
      const why = `the ${endpoint} body is larger than ${max} bytes and cannot be checked`;
      log?.(entry(conn, method, path, { ...verdict, allowed: false }, why, audit, audit ? undefined : 413));
      if (audit) return forward(req, res, conn, t, verdict, undefined, chunks);
      req.pause();
      reply(res, 413, `secpolicy: ${verdict.rule!.name}: ${why}`, true);
    };
    if (declared !== undefined && Number(declared) > max) return tooLarge();
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      chunks.push(chunk);
      if (size > max) {
        req.off('data', onData);
        req.off('end', onEnd);
        tooLarge();
      }
    };
    const onEnd = (): void => {
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      dockerCheck(route, verdict, body).then((refusal) => {
        if (refusal === undefined) {
          log?.(entry(conn, method, path, verdict, allowedReason(verdict), true));
          return forward(req, res, conn, t, verdict, body);
        }
        log?.(entry(conn, method, path, { ...verdict, allowed: false }, refusal.why, audit, audit ? undefined : refusal.status));
        if (audit) return forward(req, res, conn, t, verdict, body);
        reply(res, refusal.status, `secpolicy: ${verdict.rule!.name}: ${refusal.why}`);
      }, onDockerError(res));
    };
    req.on('data', onData);
    req.on('end', onEnd);
  };

  /** The Docker profile's checks of a request that needs no more reading; fails closed. */
  const dockerCheck = async (
    route: DockerRoute & { refuse?: undefined },
    verdict: Verdict,
    body?: Buffer,
  ): Promise<Refusal | undefined> => {
    try {
      return await profile!.check(route, verdict.rule!.docker!, body);
    } catch (e) {
      return { status: 403, why: `the request cannot be checked: ${(e as Error)?.message}` };
    }
  };

  const onDockerError = (res: http.ServerResponse) => (e: unknown) => {
    if (!res.headersSent) reply(res, 500, `secpolicy: internal error: ${(e as Error)?.message}`, true);
    else res.destroy();
  };

  const handle = (req: http.IncomingMessage, res: http.ServerResponse, conn: Conn): void => {
    const method = req.method!;
    const t = canonicalTarget(req.url!);
    if ('error' in t) {
      log?.(entry(conn, method, req.url!, undefined, t.error, false, 400));
      return reply(res, 400, `secpolicy: bad request: ${t.error}`);
    }
    const m = docker ? dockerPath(t) : t;
    const verdict = decide(conn, method, m.path);
    if (!verdict.allowed) {
      log?.(entry(conn, method, t.path, verdict, verdict.why, audit, audit ? undefined : 403));
      if (!audit) return reply(res, 403, denial(verdict));
      return forward(req, res, conn, t, verdict);
    }
    if (docker && verdict.rule!.docker) {
      // A rule with docker limits: only what the Docker profile models goes through.
      const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
      const route = profile!.route(method, t.segments, t.query, hasBody);
      if (route.refuse) {
        log?.(
          entry(conn, method, t.path, { ...verdict, allowed: false }, route.refuse.why, audit, audit ? undefined : route.refuse.status),
        );
        if (!audit) return reply(res, route.refuse.status, `secpolicy: ${verdict.rule!.name}: ${route.refuse.why}`);
        return forward(req, res, conn, t, verdict);
      }
      if (route.body) return inspect(req, res, conn, t, m.path, verdict, route);
      // The request's body (a stream endpoint's) stays unread until forward() pipes it.
      dockerCheck(route, verdict).then((refusal) => {
        if (refusal === undefined || audit) {
          log?.(
            entry(conn, method, t.path, refusal ? { ...verdict, allowed: false } : verdict, refusal?.why ?? allowedReason(verdict), true),
          );
          return forward(req, res, conn, t, verdict);
        }
        log?.(entry(conn, method, t.path, { ...verdict, allowed: false }, refusal.why, false, refusal.status));
        reply(res, refusal.status, `secpolicy: ${verdict.rule!.name}: ${refusal.why}`);
      }, onDockerError(res));
      return;
    }
    log?.(entry(conn, method, t.path, verdict, allowedReason(verdict), true));
    forward(req, res, conn, t, verdict);
  };

  /** Never crash on a request: an unexpected failure is a 500 (or a cut connection) for that request only. */
  const safely = (req: http.IncomingMessage, res: http.ServerResponse, conn: Conn): void => {
    try {
      handle(req, res, conn);
    } catch (e) {
      if (!res.headersSent) reply(res, 500, `secpolicy: internal error: ${(e as Error)?.message}`, true);
      else res.destroy();
    }
  };

  /** A response is done (sent or cut): an upstream request still running is cut too. */
  function onResponseClose(this: Downstream): void {
    const up = this[kUpstream];
    if (up !== undefined && !this.writableFinished) up.destroy();
    const conn = this[kConn];
    conn.active--;
    if (state.closing && conn.active === 0 && !conn.upgraded) this.req.socket.destroySoon();
  }

  // ---- upgrades (docker attach, exec start): spliced once the upstream says 101 -------

  const rawReply = (socket: net.Socket, status: number, text: string, message: string): void => {
    const body = JSON.stringify({ message });
    socket.end(
      `HTTP/1.1 ${status} ${text}\r\nContent-Type: ${JSON_HEADERS}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  };

  const upgrade = (req: http.IncomingMessage, socket: net.Socket, head: Buffer, conn: Conn): void => {
    const method = req.method!;
    socket.setTimeout(0);
    const t = canonicalTarget(req.url!);
    if ('error' in t) {
      log?.(entry(conn, method, req.url!, undefined, t.error, false, 400));
      return rawReply(socket, 400, 'Bad Request', `secpolicy: bad request: ${t.error}`);
    }
    const m = docker ? dockerPath(t) : t;
    const verdict = decide(conn, method, m.path);
    const chunked = req.headers['transfer-encoding'] !== undefined;
    const length = Number(req.headers['content-length'] ?? 0);
    let route: (DockerRoute & { refuse?: undefined }) | undefined;
    if (docker && verdict.allowed && verdict.rule!.docker) {
      // A rule with docker limits: only the profile's streams are upgraded (attach, exec start), after its checks.
      const r = profile!.route(method, t.segments, t.query, chunked || length > 0);
      if (r.refuse || (r.endpoint.kind !== 'stream' && r.endpoint.body !== 'execStart')) {
        verdict.allowed = false;
        verdict.why = r.refuse ? r.refuse.why : `${method} ${m.path} cannot be sent as an upgrade`;
      } else route = r;
    }
    if (verdict.allowed && (chunked || length > policy.maxBodyBytes)) {
      log?.(entry(conn, method, t.path, verdict, 'an upgrade request with a chunked or oversized body', false, 400));
      return rawReply(socket, 400, 'Bad Request', 'secpolicy: bad request: an upgrade request may carry only a small Content-Length body');
    }
    if (!verdict.allowed) {
      log?.(entry(conn, method, t.path, verdict, verdict.why, audit, audit ? undefined : 403));
      if (!audit) return rawReply(socket, 403, 'Forbidden', denial(verdict));
    } else {
      log?.(entry(conn, method, t.path, verdict, allowedReason(verdict), true));
    }
    conn.upgraded = true;
    // The request body (exec start's JSON) is sent as the body; anything after it is stream data.
    // Node 26's parser keeps an upgrade request's body in `req` (older ones leave it in `head`).
    const parsed: Buffer[] = [];
    for (let chunk: Buffer | null; (chunk = req.read() as Buffer | null) !== null;) parsed.push(chunk);
    let pending = parsed.length ? Buffer.concat([...parsed, head]) : head;
    const collect = (done: (body: Buffer) => void): void => {
      if (pending.length >= length) return done(pending);
      const onData = (chunk: Buffer): void => {
        pending = Buffer.concat([pending, chunk]);
        if (pending.length >= length) {
          socket.off('data', onData);
          req.off('data', onData);
          socket.pause();
          done(pending);
        }
      };
      if (!req.complete) req.on('data', onData);
      socket.on('data', onData);
    };
    const upgradeForward = (all: Buffer, body: Buffer): void => {
      try {
        const rest = all.subarray(length);
        const path = t.forward + t.query;
        const headers = forwardHeaders(req, conn, verdict, method, path, true);
        if (length > 0 || (method !== 'GET' && method !== 'HEAD')) headers.push('Content-Length', String(length));
        const up = http.request({
          createConnection: () => net.createConnection({ path: target, allowHalfOpen: true }),
          method,
          path,
          headers,
          setHost: false,
        } as http.RequestOptions);
        const fail = (): void => {
          socket.destroy();
          up.destroy();
        };
        socket.on('error', fail);
        up.on('error', (error) => {
          if (socket.writable)
            rawReply(
              socket,
              502,
              'Bad Gateway',
              `secpolicy: the upstream is unavailable (${(error as NodeJS.ErrnoException).code ?? error.message})`,
            );
        });
        up.on('response', (ures) => {
          // No upgrade: relay the answer and close; the client's stream never reaches the upstream.
          let headText = `HTTP/1.1 ${ures.statusCode} ${ures.statusMessage}\r\n`;
          const h = responseHeaders(ures.rawHeaders);
          for (let i = 0; i < h.length; i += 2) headText += `${h[i]}: ${h[i + 1]}\r\n`;
          socket.write(headText + 'Connection: close\r\n\r\n');
          ures.pipe(socket);
        });
        up.on('upgrade', (ures, upstream, upstreamHead) => {
          let headText = `HTTP/1.1 101 ${ures.statusMessage}\r\n`;
          const raw = ures.rawHeaders;
          for (let i = 0; i < raw.length; i += 2) headText += `${raw[i]}: ${raw[i + 1]}\r\n`;
          socket.write(headText + '\r\n');
          if (upstreamHead.length) socket.write(upstreamHead);
          if (rest.length) upstream.write(rest);
          upstream.on('error', fail);
          socket.off('error', fail);
          socket.on('error', fail);
          socket.pipe(upstream);
          upstream.pipe(socket);
          socket.resume();
        });
        up.end(body);
      } catch {
        socket.destroy();
      }
    };
    collect((all) => {
      const body = all.subarray(0, length);
      if (route === undefined) return upgradeForward(all, body);
      dockerCheck(route, verdict, body).then(
        (refusal) => {
          if (refusal === undefined || audit) return upgradeForward(all, body);
          log?.(entry(conn, method, t.path, { ...verdict, allowed: false }, refusal.why, false, refusal.status));
          rawReply(
            socket,
            refusal.status,
            refusal.status === 400 ? 'Bad Request' : refusal.status === 502 ? 'Bad Gateway' : 'Forbidden',
            `secpolicy: ${verdict.rule!.name}: ${refusal.why}`,
          );
        },
        () => socket.destroy(),
      );
    });
  };

  // ---- the servers -------------------------------------------------------------------

  const httpServer = http.createServer(
    { requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 30_000, insecureHTTPParser: false },
    (req, res) => {
      const conn = conns.get(req.socket)!;
      conn.active++;
      (res as Downstream)[kConn] = conn;
      res.on('close', onResponseClose);
      if (state.closing) res.shouldKeepAlive = false;
      if (!needsNames) return safely(req, res, conn);
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
  httpServer.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    // http has handed the socket over with its error listener removed: a reset must not crash us.
    socket.on('error', () => socket.destroy());
    const conn = conns.get(socket)!;
    const pending = prepare(conn);
    const go = (): void => {
      try {
        upgrade(req, socket, head, conn);
      } catch {
        socket.destroy();
      }
    };
    if (pending === undefined) return go();
    pending.then(go, () => socket.destroy());
  });
  httpServer.on('connect', (req: http.IncomingMessage, socket: net.Socket) => {
    socket.on('error', () => socket.destroy());
    const conn = conns.get(socket);
    if (conn) log?.(entry(conn, req.method!, req.url!, undefined, 'authority-form (CONNECT) targets are not served', false, 400));
    rawReply(socket, 400, 'Bad Request', 'secpolicy: bad request: CONNECT is not served');
  });
  httpServer.on('clientError', (error: NodeJS.ErrnoException, socket: net.Socket) => {
    if (!socket.writable || error.code === 'ECONNRESET') return void socket.destroy();
    const large = error.code === 'HPE_HEADER_OVERFLOW';
    rawReply(
      socket,
      large ? 431 : 400,
      large ? 'Request Header Fields Too Large' : 'Bad Request',
      `secpolicy: bad request: ${large ? 'headers too large' : 'not valid HTTP/1.1'}`,
    );
  });
  // A client that shuts its write side down after its requests still gets every answer.
  (httpServer as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  // The http server never listens itself; this starts its header timeout checks.
  httpServer.emit('listening');

  const connectPolicy = policy.connect;
  const server = createServer(
    {
      policy: audit || !connectPolicy ? new Policy() : connectPolicy,
      allowHalfOpen: true,
      ...(o.handshakeTimeout !== undefined && { handshakeTimeout: o.handshakeTimeout }),
    },
    (socket, peer) => {
      if (state.closing) return void socket.destroy();
      const conn: Conn = { peer, who: [], whoUntil: [], logPeer: undefined, active: 0, upgraded: false };
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
        if (!allowed) log?.(entry(conn, null, null, undefined, `connect policy: ${why}`, true));
      }
      conns.set(socket, conn);
      state.sockets.add(socket);
      socket.once('close', () => {
        state.sockets.delete(socket);
        if (state.closing && state.sockets.size === 0) state.drained?.();
      });
      httpServer.emit('connection', socket);
    },
  );
  server.on('denied', (reason: Decision | SecpolicyError) => {
    if (!log) return;
    if ('allowed' in reason) {
      const conn: Conn = { peer: reason.peer, who: [], whoUntil: [], logPeer: undefined, active: 0, upgraded: false };
      log(entry(conn, null, null, undefined, `connect policy: ${reason.failures.map((f) => f.message).join('; ')}`, false));
    }
  });
  server.on('close', () => {
    httpServer.close();
    agent.destroy();
  });
  gateways.set(server, state);
  try {
    await listenAt(server, where, {
      mode,
      ...(o.allowInsecureDirectory !== undefined && { allowInsecureDirectory: o.allowInsecureDirectory }),
    });
  } catch (e) {
    sink?.close();
    agent.destroy();
    httpServer.close();
    throw e;
  }
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
  const state = gateways.get(server);
  if (!state) throw invalidArg('server', 'a server made by createGateway()', server);
  const grace = v.grace('options.grace', v.options<CloseGatewayOptions>('options', options).grace, 10_000);
  state.closing = true;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  const drained = new Promise<void>((resolve) => {
    state.drained = resolve;
    if (state.sockets.size === 0) resolve();
  });
  for (const socket of state.sockets) {
    // An idle keep-alive connection has no request: nothing to finish.
    const idle = (socket as unknown as { _httpMessage?: unknown })._httpMessage == null && !isUpgraded(socket);
    if (idle) socket.destroy();
  }
  const timer = setTimeout(() => {
    for (const socket of state.sockets) socket.destroy();
  }, grace);
  await Promise.all([closed, drained]);
  clearTimeout(timer);
  state.sink?.close();
}

function isUpgraded(socket: net.Socket): boolean {
  // http's parser is gone from an upgraded socket.
  return (socket as unknown as { parser?: unknown }).parser == null;
}

/** Docker names and labels of containers, cached briefly, looked up through the upstream. */
class ContainerResolver {
  readonly #cache = new Map<string, { until: number; value: ContainerInfo | Error }>();
  readonly #pending = new Map<string, Promise<ContainerInfo | Error>>();

  constructor(
    readonly agent: http.Agent,
    readonly target: string,
    readonly ttl: number,
  ) {}

  cached(c: { runtime: string; id: string }): ContainerInfo | Error | undefined {
    if (c.runtime !== 'docker') return new Error(`a ${c.runtime} container is not known to the Docker API`);
    const hit = this.#cache.get(c.id);
    if (hit && Date.now() < hit.until) return hit.value;
    return undefined;
  }

  resolve(c: { runtime: string; id: string }): Promise<ContainerInfo | Error> {
    let p = this.#pending.get(c.id);
    if (p) return p;
    p = this.#lookup(c.id).then((value) => {
      this.#pending.delete(c.id);
      if (this.#cache.size >= 1024) this.#cache.clear();
      this.#cache.set(c.id, { until: Date.now() + this.ttl, value });
      return value;
    });
    this.#pending.set(c.id, p);
    return p;
  }

  #lookup(id: string): Promise<ContainerInfo | Error> {
    return new Promise((resolve) => {
      const req = http.get(
        {
          agent: this.agent,
          socketPath: this.target,
          path: `/containers/${encodeURIComponent(id)}/json`,
          headers: { Host: 'docker' },
          timeout: 2000,
        } as http.RequestOptions,
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > 4 * 1024 * 1024) req.destroy(new Error('container inspect answer too large'));
            else chunks.push(c);
          });
          res.on('end', () => {
            if (res.statusCode !== 200) return resolve(new Error(`the Docker API answered ${res.statusCode} for container ${id}`));
            try {
              const data = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { Name?: unknown; Config?: { Labels?: unknown } };
              const labels = data.Config?.Labels;
              resolve({
                name: typeof data.Name === 'string' ? data.Name.replace(/^\//, '') : '',
                labels: typeof labels === 'object' && labels !== null ? (labels as Record<string, string>) : {},
              });
            } catch (e) {
              resolve(new Error(`unreadable container inspect answer: ${(e as Error).message}`));
            }
          });
          res.on('error', (e) => resolve(e));
        },
      );
      req.on('timeout', () => req.destroy(new Error('the Docker API did not answer in time')));
      req.on('error', (e) => resolve(e));
    });
  }
}
