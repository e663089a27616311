/**
 * Upgrades (docker attach, exec start): decided like any request, then sent upstream on a
 * connection of their own (never pooled) and spliced both ways once the upstream says 101.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import type * as stream from 'node:stream';
import { checkedTarget, dockerCheck, rawStreamAnswer, refusalMessage, type CheckedRoute } from './body.js';
import { allowedReason, closeSoon, denial, elapsed, entry, queryOf, rawReply, record, type Conn } from './context.js';
import { forwardHeaders, responseHeaders } from './headers.js';
import type { GatewayLogEntry } from './log.js';
import type { CanonicalTarget } from './path.js';
import { route } from './request.js';

const STATUS_TEXT = { 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 502: 'Bad Gateway' } as const;

/**
 * Handles an upgrade request on the stream http has handed over: the connection's socket,
 * or (newer Node, when the request's body has not all arrived with its head) a stream that
 * carries what follows the body, the body itself coming through `req`.
 */
export function upgrade(req: http.IncomingMessage, socket: stream.Duplex, head: Buffer, conn: Conn): void {
  const gw = conn.gw;
  const audit = gw.audit;
  const method = req.method!;
  const start = performance.now();
  // An upgrade's decision is recorded once its answer is known: the gateway's, or the upstream's head.
  const log = (e: GatewayLogEntry | undefined, status: number | null): void => {
    if (e === undefined) return;
    e.query = queryOf(req.url!);
    e.status = status;
    e.durationMs = elapsed(start);
    record(gw, e);
  };
  const made = (e: GatewayLogEntry): GatewayLogEntry | undefined => (gw.recording ? e : undefined);
  // The connection's socket, whatever stream wraps it: http no longer times it out (the bounds below do).
  (req.socket as net.Socket).setTimeout(0);
  const chunked = req.headers['transfer-encoding'] !== undefined;
  const length = Number(req.headers['content-length'] ?? 0);
  const r = route(conn, method, req.url!, chunked || length > 0);
  if ('error' in r) {
    log(made(entry(conn, method, req.url!, undefined, r.error, false)), 400);
    return rawReply(socket, 400, 'Bad Request', `secpolicy: bad request: ${r.error}`);
  }
  const { t, m, verdict, docker } = r;
  let stream: CheckedRoute | undefined;
  if (docker !== undefined) {
    // A rule with docker limits: only the profile's streams are upgraded (attach, exec start), after its checks.
    if (docker.refuse || (docker.endpoint.kind !== 'stream' && docker.endpoint.body !== 'execStart')) {
      verdict.allowed = false;
      verdict.why = docker.refuse ? docker.refuse.why : `${method} ${m.path} cannot be sent as an upgrade`;
    } else stream = docker;
  }
  if (verdict.allowed && (chunked || length > gw.policy.maxBodyBytes)) {
    log(made(entry(conn, method, t.path, verdict, 'an upgrade request with a chunked or oversized body', false)), 400);
    return rawReply(socket, 400, 'Bad Request', 'secpolicy: bad request: an upgrade request may carry only a small Content-Length body');
  }
  // The request body (exec start's JSON) is sent as the body; anything after it is stream data.
  // Node 26's parser keeps an upgrade request's body in `req` (older ones leave it in `head`).
  const parsed: Buffer[] = [];
  for (let chunk: Buffer | null; (chunk = req.read() as Buffer | null) !== null;) parsed.push(chunk);
  let read = parsed.length ? Buffer.concat([...parsed, head]) : head;
  const collect = (done: (body: Buffer) => void, short: () => void = () => void socket.destroy()): void => {
    if (read.length >= length) return done(read);
    // The body is bounded like any request's: a peer that announces more than it sends,
    // and stops or goes away, is cut (the socket is its own now, http no longer times it).
    const over = (): void => {
      clearTimeout(timer);
      socket.off('end', cut);
      socket.off('data', onData);
      req.off('data', onData);
    };
    const cut = (): void => {
      over();
      short();
    };
    const timer = setTimeout(cut, gw.policy.limits.requestTimeoutMs);
    const onData = (chunk: Buffer): void => {
      read = Buffer.concat([read, chunk]);
      if (read.length >= length) {
        over();
        socket.pause();
        done(read);
      }
    };
    socket.once('end', cut);
    socket.once('close', () => clearTimeout(timer));
    if (!req.complete) req.on('data', onData);
    socket.on('data', onData);
  };
  // The decision, recorded once, when its answer is known.
  let pending: GatewayLogEntry | undefined;
  const answered = (status: number | null): void => {
    log(pending, status);
    pending = undefined;
  };
  if (!verdict.allowed) {
    if (!audit) {
      const refuse = (): void => {
        pending = made(entry(conn, method, t.path, verdict, verdict.why, false));
        // Recorded with its status once the answer is out; with none when the stream closed first
        // (newer Node closes an upgrade's stream when the client ends before its body came).
        if (socket.destroyed) return answered(null);
        rawReply(socket, 403, 'Forbidden', denial(verdict));
        if (socket.writableFinished) return answered(403);
        socket.once('finish', () => answered(403));
        socket.once('close', () => answered(null));
      };
      // A small announced body is read before the answer: a client that writes it after its
      // head (the docker CLI does) gets the 403, not a broken pipe.
      if (chunked || length > gw.policy.maxBodyBytes) return refuse();
      return collect(refuse, refuse);
    }
    pending = made(entry(conn, method, t.path, verdict, verdict.why, true));
  } else {
    pending = made(entry(conn, method, t.path, verdict, allowedReason(verdict), true));
  }
  conn.upgraded = true;
  socket.once('close', () => answered(null));
  const upgradeForward = (all: Buffer, body: Buffer, to: CanonicalTarget): void => {
    if (socket.destroyed) return;
    try {
      const rest = all.subarray(length);
      const path = to.forward + to.query;
      const headers = forwardHeaders(req, conn, verdict, method, path, true);
      if (length > 0 || (method !== 'GET' && method !== 'HEAD')) headers.push('Content-Length', String(length));
      const up = http.request({
        createConnection: () => net.createConnection({ path: gw.target, allowHalfOpen: true }),
        method,
        path,
        headers,
        setHost: false,
      } as http.RequestOptions);
      // Both sides go together: when either closes or fails, or once the gateway has
      // ended its side to the client (an answer relayed, or the upstream's stream over)
      // and flushed it, the client and the upstream connection are closed.
      const fail = (): void => {
        socket.destroy();
        up.destroy();
      };
      socket.on('error', fail);
      socket.once('close', fail);
      socket.once('finish', fail);
      up.on('error', (error) => {
        gw.metrics?.upstreamError();
        answered(socket.writable ? 502 : null);
        if (socket.writable)
          rawReply(
            socket,
            502,
            'Bad Gateway',
            `secpolicy: the upstream is unavailable (${(error as NodeJS.ErrnoException).code ?? error.message})`,
          );
        else socket.destroy();
      });
      up.on('response', (ures) => {
        answered(ures.statusCode!);
        // No upgrade: relay the answer and close; the client's stream never reaches the upstream.
        let headText = `HTTP/1.1 ${ures.statusCode} ${ures.statusMessage}\r\n`;
        // Closed after this answer whatever the gateway is doing: `Connection: close` once, below.
        const h = responseHeaders(ures.rawHeaders, false);
        for (let i = 0; i < h.length; i += 2) headText += `${h[i]}: ${h[i + 1]}\r\n`;
        socket.write(headText + 'Connection: close\r\n\r\n');
        ures.on('error', fail);
        ures.pipe(socket);
      });
      up.on('upgrade', (ures, upstream, upstreamHead) => {
        answered(101);
        let headText = `HTTP/1.1 101 ${ures.statusMessage}\r\n`;
        const raw = ures.rawHeaders;
        for (let i = 0; i < raw.length; i += 2) headText += `${raw[i]}: ${raw[i + 1]}\r\n`;
        socket.write(headText + '\r\n');
        if (upstreamHead.length) socket.write(upstreamHead);
        if (rest.length) upstream.write(rest);
        const both = (): void => {
          socket.destroy();
          upstream.destroy();
        };
        upstream.on('error', both);
        upstream.once('close', both);
        socket.off('error', fail).off('close', fail).off('finish', fail);
        socket.on('error', both);
        socket.once('close', both);
        // The client ending its input is a half-close passed on (attach: stdin closed, output goes on);
        // the upstream ending its output ends the stream: once flushed to the client, both close.
        socket.once('finish', both);
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
    if (stream === undefined) return upgradeForward(all, body, t);
    dockerCheck(conn, stream, verdict, body).then(
      (checked) => {
        if (socket.destroyed) return;
        const refusal = checked.refuse;
        if (refusal === undefined) return upgradeForward(all, body, checkedTarget(t, stream, checked));
        pending = made(entry(conn, method, t.path, { ...verdict, allowed: false }, refusal.why, audit));
        if (audit) return upgradeForward(all, body, t);
        answered(refusal.status);
        const raw = rawStreamAnswer(stream, refusal);
        if (raw === undefined) return rawReply(socket, refusal.status, STATUS_TEXT[refusal.status], refusalMessage(verdict, refusal));
        socket.end(
          `HTTP/1.1 ${refusal.status} ${STATUS_TEXT[refusal.status]}\r\nContent-Type: ${raw.contentType}\r\nConnection: close\r\n\r\n${raw.body}`,
        );
        closeSoon(socket);
      },
      () => socket.destroy(),
    );
  });
}
