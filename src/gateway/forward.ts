/**
 * Forwarding a decided request: sent upstream through the pool with the headers the
 * gateway allows, its body as checked (or piped as it comes), and the upstream's answer
 * relayed back with backpressure; a client that goes away cuts the upstream request.
 */
import * as http from 'node:http';
import { arrived, reply, settle, type Conn, type Verdict } from './context.js';
import { forwardHeaders, hasContentLength, responseHeaders } from './headers.js';
import { ownedEvent, ownedListing, type OwnedAnswer } from './docker-owner.js';
import type { CanonicalTarget } from './path.js';

/** Where a forwarded request's pieces find each other, without a closure per request. */
const kDownstream = Symbol('downstream');
const kUpstream = Symbol('upstream');
const kConn = Symbol('conn');
const kAnswer = Symbol('answer');
type Upstream = http.ClientRequest & { [kDownstream]: http.ServerResponse; [kAnswer]?: OwnedAnswer };
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
 * part of a body already read (audit mode past the bound) before the rest is piped;
 * `answer`, for an owner rule's listing or event stream, what the answer may hold.
 */
export function forward(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  conn: Conn,
  t: CanonicalTarget,
  verdict: Verdict,
  body?: Buffer,
  prefix?: Buffer[],
  answer?: OwnedAnswer,
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
  // (A HEAD's answer has no body to check.)
  if (answer !== undefined && method !== 'HEAD') (up as Upstream)[kAnswer] = answer;
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
  const answer = this[kAnswer];
  if (answer !== undefined && ures.statusCode === 200) return ownedOnly(res, ures, answer);
  res.writeHead(ures.statusCode!, ures.statusMessage, responseHeaders(ures.rawHeaders, connOf(res).gw.closing));
  // A response of unknown length is a stream (container wait, logs -f, events): its
  // head goes out at once, as the daemon sent it, since clients wait for it before the
  // body (docker run starts the container only once the wait's head has arrived).
  if (!hasContentLength(ures.rawHeaders)) res.flushHeaders();
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

/** Bound on a listing's answer read whole to be checked. */
const MAX_LISTING = 64 * 1024 * 1024;
/** Bound on one event of the stream. */
const MAX_EVENT = 1024 * 1024;

/**
 * An owner rule's listing or event stream: only the caller's objects go to the client. A
 * listing is read whole, checked object by object and sent with its new length; the event
 * stream is checked event by event (one JSON object a line) as it comes. An answer that
 * cannot be read is cut, never passed on unchecked.
 */
function ownedOnly(res: http.ServerResponse, ures: http.IncomingMessage, answer: OwnedAnswer): void {
  const cut = (): void => {
    ures.destroy();
    if (!res.headersSent) reply(connOf(res).gw, res, 502, 'secpolicy: the answer could not be checked', true);
    else res.destroy();
  };
  ures.on('error', cut);
  const closing = connOf(res).gw.closing;
  if (answer.kind === 'events') {
    const head: Record<string, string> = { 'Content-Type': ures.headers['content-type'] ?? 'application/json' };
    if (closing) head.Connection = 'close';
    res.writeHead(200, head);
    res.flushHeaders();
    let pending = '';
    ures.setEncoding('utf8');
    ures.on('data', (text: string) => {
      if (res.destroyed) return;
      pending += text;
      let nl: number;
      let out = '';
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line.trim() !== '' && ownedEvent(line, answer.owner)) out += line + '\n';
      }
      if (pending.length > MAX_EVENT) return cut();
      if (out !== '' && !res.write(out)) {
        ures.pause();
        res.once('drain', () => ures.resume());
      }
    });
    ures.on('end', () => {
      if (pending.trim() !== '' && ownedEvent(pending, answer.owner)) res.write(pending);
      if (!res.destroyed) res.end();
    });
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  ures.on('data', (c: Buffer) => {
    size += c.length;
    if (size > MAX_LISTING) return cut();
    chunks.push(c);
  });
  ures.on('end', () => {
    if (res.destroyed) return;
    const owned = ownedListing(answer.kind as Exclude<OwnedAnswer['kind'], 'events'>, Buffer.concat(chunks).toString('utf8'), answer.owner);
    if (owned === undefined) return cut();
    const body = owned + '\n';
    const head: Record<string, string | number> = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) };
    if (closing) head.Connection = 'close';
    res.writeHead(200, head).end(body);
  });
}
