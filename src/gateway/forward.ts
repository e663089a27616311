/**
 * Forwarding a decided request: sent upstream through the pool with the headers the
 * gateway allows, its body as checked (or piped as it comes), and the upstream's answer
 * relayed back with backpressure; a client that goes away cuts the upstream request.
 */
import * as http from 'node:http';
import { arrived, reply, settle, type Conn, type Verdict } from './context.js';
import { forwardHeaders, RESPONSE_HOP } from './headers.js';
import type { CanonicalTarget } from './path.js';

/** Where a forwarded request's pieces find each other, without a closure per request. */
const kDownstream = Symbol('downstream');
const kUpstream = Symbol('upstream');
const kConn = Symbol('conn');
type Upstream = http.ClientRequest & { [kDownstream]: http.ServerResponse };
type UpstreamResponse = http.IncomingMessage & { [kDownstream]: http.ServerResponse };
type Downstream = http.ServerResponse & { [kUpstream]?: http.ClientRequest; [kConn]: Conn };

/** Ties a response to its connection: its request counts as in progress until the response closes. */
export function track(res: http.ServerResponse, conn: Conn): void {
  conn.active++;
  arrived(res);
  (res as Downstream)[kConn] = conn;
  res.on('close', onResponseClose);
}

/** A response is done (sent or cut): an upstream request still running is cut too. */
function onResponseClose(this: Downstream): void {
  const up = this[kUpstream];
  if (up !== undefined && !this.writableFinished) up.destroy();
  const conn = this[kConn];
  settle(conn.gw, this);
  conn.active--;
  if (conn.gw.closing && conn.active === 0 && !conn.upgraded) this.req.socket.destroySoon();
}

/** The connection of a tracked response. */
function connOf(res: http.ServerResponse): Conn {
  return (res as Downstream)[kConn];
}

/**
 * Sends the request upstream. `body` is the exact bytes that were checked; `prefix` the
 * part of a body already read (audit mode past the bound) before the rest is piped.
 */
export function forward(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  conn: Conn,
  t: CanonicalTarget,
  verdict: Verdict,
  body?: Buffer,
  prefix?: Buffer[],
): void {
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
    agent: conn.gw.agent,
    socketPath: conn.gw.target,
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
}

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
  if (connOf(res).gw.closing) out.push('Connection', 'close');
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
  connOf(res).gw.metrics?.upstreamError();
  if (!res.headersSent)
    reply(
      connOf(res).gw,
      res,
      502,
      `secpolicy: the upstream is unavailable (${(error as NodeJS.ErrnoException).code ?? error.message})`,
      true,
    );
  else res.destroy();
}

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
