/**
 * One HTTP request on an accepted connection: its target made canonical, decided by the
 * rules, then refused, inspected or forwarded.
 */
import type http from 'node:http';
import { checkedTarget, dockerCheck, inspect, onDockerError, replyRefusal } from './body.js';
import { allowedReason, denial, entry, reply, type Conn } from './context.js';
import { decide } from './decide.js';
import { forward } from './forward.js';
import { canonicalTarget, dockerPath } from './path.js';

function handle(req: http.IncomingMessage, res: http.ServerResponse, conn: Conn): void {
  const gw = conn.gw;
  const log = gw.log;
  const method = req.method!;
  const t = canonicalTarget(req.url!);
  if ('error' in t) {
    log?.(entry(conn, method, req.url!, undefined, t.error, false, 400));
    return reply(gw, res, 400, `secpolicy: bad request: ${t.error}`);
  }
  const m = gw.docker ? dockerPath(t) : t;
  const verdict = decide(conn, method, m.path);
  if (!verdict.allowed) {
    log?.(entry(conn, method, t.path, verdict, verdict.why, gw.audit, gw.audit ? undefined : 403));
    // A peer no rule admits has nothing more to ask: its connection is closed, not kept
    // alive to drain whatever body it announced.
    if (!gw.audit) return reply(gw, res, 403, denial(verdict), verdict.rule === undefined);
    return forward(req, res, conn, t, verdict);
  }
  if (gw.docker && verdict.rule!.docker) {
    // A rule with docker limits: only what the Docker profile models goes through.
    const audit = gw.audit;
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    const route = gw.profile!.route(method, t.segments, t.query, hasBody);
    if (route.refuse) {
      log?.(entry(conn, method, t.path, { ...verdict, allowed: false }, route.refuse.why, audit, audit ? undefined : route.refuse.status));
      if (!audit) return reply(gw, res, route.refuse.status, `secpolicy: ${verdict.rule!.name}: ${route.refuse.why}`);
      return forward(req, res, conn, t, verdict);
    }
    if (route.body) return inspect(req, res, conn, t, m.path, verdict, route);
    // The request's body (a stream endpoint's) stays unread until forward() pipes it.
    dockerCheck(conn, route, verdict).then(
      (checked) => {
        const refusal = checked.refuse;
        if (refusal === undefined || audit) {
          log?.(
            entry(conn, method, t.path, refusal ? { ...verdict, allowed: false } : verdict, refusal?.why ?? allowedReason(verdict), true),
          );
          return forward(req, res, conn, checkedTarget(t, route, checked), verdict);
        }
        log?.(entry(conn, method, t.path, { ...verdict, allowed: false }, refusal.why, false, refusal.status));
        replyRefusal(conn, res, verdict, route, refusal);
      },
      onDockerError(conn, res),
    );
    return;
  }
  log?.(entry(conn, method, t.path, verdict, allowedReason(verdict), true));
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
