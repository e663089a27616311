/**
 * One HTTP request on an accepted connection: its target made canonical, decided by the
 * rules (route(), which `secpolicy explain` runs too), then refused, inspected or forwarded.
 */
import type http from 'node:http';
import { inspect } from './body.js';
import { allowedReason, denial, entry, note, reply, type Conn, type Verdict } from './context.js';
import { decide } from './decide.js';
import { dockerEndpoint, type DockerEndpoint } from './docker.js';
import { forward } from './forward.js';
import { canonicalTarget, dockerPath, type CanonicalTarget } from './path.js';

/** What the first steps decide about a request: its canonical target, the rules' verdict, the endpoint whose body is inspected. */
export interface Routed {
  t: CanonicalTarget;
  /** The path the rules match (with `api: docker`, without its version prefix) and its segments. */
  m: { path: string; segments: readonly string[] };
  verdict: Verdict;
  /** With `api: docker` and a rule with limits: the endpoint whose body is checked. */
  endpoint: DockerEndpoint | undefined;
}

/**
 * The first steps of every request, live or explained: the target made canonical (an
 * ambiguous one is an error), the rules decided for the connection's peer, and the
 * inspected endpoint of an allowed request.
 */
export function route(conn: Conn, method: string, target: string): Routed | { error: string } {
  const t = canonicalTarget(target);
  if ('error' in t) return t;
  const m = conn.gw.docker ? dockerPath(t) : t;
  const verdict = decide(conn, method, m.path);
  const endpoint = verdict.allowed && conn.gw.docker && verdict.rule!.docker ? dockerEndpoint(method, m.segments) : undefined;
  return { t, m, verdict, endpoint };
}

function handle(req: http.IncomingMessage, res: http.ServerResponse, conn: Conn): void {
  const gw = conn.gw;
  const log = gw.recording;
  const method = req.method!;
  const r = route(conn, method, req.url!);
  if ('error' in r) {
    if (log) note(res, entry(conn, method, req.url!, undefined, r.error, false, 400));
    return reply(gw, res, 400, `secpolicy: bad request: ${r.error}`);
  }
  const { t, m, verdict, endpoint } = r;
  if (!verdict.allowed) {
    if (log) note(res, entry(conn, method, t.path, verdict, verdict.why, gw.audit, gw.audit ? undefined : 403));
    if (!gw.audit) return reply(gw, res, 403, denial(verdict));
    return forward(req, res, conn, t, verdict);
  }
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
