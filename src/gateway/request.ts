/**
 * One HTTP request on an accepted connection: its target made canonical, decided by the
 * rules, then refused, inspected or forwarded.
 */
import type http from 'node:http';
import { inspect } from './body.js';
import { allowedReason, denial, entry, note, reply, type Conn } from './context.js';
import { decide } from './decide.js';
import { dockerEndpoint } from './docker.js';
import { forward } from './forward.js';
import { canonicalTarget, dockerPath } from './path.js';

function handle(req: http.IncomingMessage, res: http.ServerResponse, conn: Conn): void {
  const gw = conn.gw;
  const log = gw.recording;
  const method = req.method!;
  const t = canonicalTarget(req.url!);
  if ('error' in t) {
    if (log) note(res, entry(conn, method, req.url!, undefined, t.error, false, 400));
    return reply(gw, res, 400, `secpolicy: bad request: ${t.error}`);
  }
  const m = gw.docker ? dockerPath(t) : t;
  const verdict = decide(conn, method, m.path);
  if (!verdict.allowed) {
    if (log) note(res, entry(conn, method, t.path, verdict, verdict.why, gw.audit, gw.audit ? undefined : 403));
    if (!gw.audit) return reply(gw, res, 403, denial(verdict));
    return forward(req, res, conn, t, verdict);
  }
  const endpoint = gw.docker && verdict.rule!.docker ? dockerEndpoint(method, m.segments) : undefined;
  if (endpoint !== undefined) return inspect(req, res, conn, t, m.path, verdict, endpoint);
  if (log) note(res, entry(conn, method, t.path, verdict, allowedReason(verdict), true));
  forward(req, res, conn, t, verdict);
}

/** Handles a request; never crashes: an unexpected failure is a 500 (or a cut connection) for that request only. */
export function safely(req: http.IncomingMessage, res: http.ServerResponse, conn: Conn): void {
  try {
    handle(req, res, conn);
  } catch (e) {
    if (!res.headersSent) reply(conn.gw, res, 500, `secpolicy: internal error: ${(e as Error)?.message}`, true);
    else res.destroy();
  }
}
