/**
 * One HTTP request on an accepted connection: its target made canonical, decided by the
 * rules and, for a rule with `docker:` limits, routed by the Docker profile (route(), which
 * `secpolicy explain` runs too), then refused, inspected, checked or forwarded.
 */
import type * as http from 'node:http';
import { checkedTarget, dockerCheck, inspect, onDockerError, replyRefusal } from './body.js';
import { allowedReason, denial, entry, note, reply, type Conn, type Verdict } from './context.js';
import { decide } from './decide.js';
import type { DockerRoute } from './docker-request.js';
import { forward } from './forward.js';
import { canonicalTarget, dockerPath, type CanonicalTarget } from './path.js';

/** What the first steps decide about a request: its canonical target, the rules' verdict, the Docker profile's route. */
export interface Routed {
  t: CanonicalTarget;
  /** The path the rules match (with `api: docker`, without its version prefix) and its segments. */
  m: { path: string; segments: readonly string[] };
  verdict: Verdict;
  /** With `api: docker`, a request the rules allow under a rule with limits: what the Docker profile makes of it. */
  docker: DockerRoute | undefined;
}

/** Whether a request is framed with a body (a Content-Length above 0, or chunked). */
export function hasBody(req: http.IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/**
 * The first steps of every request, live or explained: the target made canonical (an
 * ambiguous one is an error), the rules decided for the connection's peer, and for an
 * allowed request under a rule with `docker:` limits, the Docker profile's route (a
 * refusal, or the endpoint to check). `body` is whether the request is framed with a body.
 */
export function route(conn: Conn, method: string, target: string, body: boolean): Routed | { error: string } {
  const t = canonicalTarget(target);
  if ('error' in t) return t;
  const gw = conn.gw;
  const m = gw.docker ? dockerPath(t) : t;
  const verdict = decide(conn, method, m.path);
  // A rule with docker limits: only what the Docker profile models goes through.
  const docker = verdict.allowed && gw.docker && verdict.rule!.docker ? gw.profile!.route(method, t.segments, t.query, body) : undefined;
  return { t, m, verdict, docker };
}

function handle(req: http.IncomingMessage, res: http.ServerResponse, conn: Conn): void {
  const gw = conn.gw;
  const log = gw.recording;
  const audit = gw.audit;
  const method = req.method!;
  const r = route(conn, method, req.url!, hasBody(req));
  if ('error' in r) {
    if (log) note(res, entry(conn, method, req.url!, undefined, r.error, false, 400));
    return reply(gw, res, 400, `secpolicy: bad request: ${r.error}`);
  }
  const { t, m, verdict, docker } = r;
  if (!verdict.allowed) {
    if (log) note(res, entry(conn, method, t.path, verdict, verdict.why, audit, audit ? undefined : 403));
    // A peer no rule admits has nothing more to ask: its connection is closed, not kept
    // alive to drain whatever body it announced.
    if (!audit) return reply(gw, res, 403, denial(verdict), verdict.rule === undefined);
    return forward(req, res, conn, t, verdict);
  }
  if (docker !== undefined) {
    if (docker.refuse) {
      const { status, why } = docker.refuse;
      if (log) note(res, entry(conn, method, t.path, { ...verdict, allowed: false }, why, audit, audit ? undefined : status));
      if (!audit) return reply(gw, res, status, `secpolicy: ${verdict.rule!.name}: ${why}`);
      return forward(req, res, conn, t, verdict);
    }
    if (docker.body) return inspect(req, res, conn, t, m.path, verdict, docker);
    // The request's body (a stream endpoint's) stays unread until forward() pipes it.
    dockerCheck(conn, docker, verdict).then(
      (checked) => {
        const refusal = checked.refuse;
        if (refusal === undefined || audit) {
          if (log)
            note(
              res,
              entry(conn, method, t.path, refusal ? { ...verdict, allowed: false } : verdict, refusal?.why ?? allowedReason(verdict), true),
            );
          return forward(
            req,
            res,
            conn,
            checkedTarget(t, docker, checked),
            verdict,
            undefined,
            undefined,
            checked.refuse ? undefined : checked.answer,
          );
        }
        if (log) note(res, entry(conn, method, t.path, { ...verdict, allowed: false }, refusal.why, false, refusal.status));
        replyRefusal(conn, res, verdict, docker, refusal);
      },
      onDockerError(conn, res),
    );
    return;
  }
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
