/**
 * The Docker profile's checks of an allowed request for a rule with `docker:` limits, and
 * inspected bodies: read whole (bounded by `maxBodyBytes`), checked, and forwarded only as
 * the exact bytes that were checked.
 */
import type * as http from 'node:http';
import { allowedReason, entry, note, reply, type Conn, type Verdict } from './context.js';
import type { Refusal } from './docker.js';
import { forwardSegments, type DockerCheck, type DockerRoute } from './docker-request.js';
import { forward } from './forward.js';
import { ownerName } from './docker-owner.js';
import { withSegments, type CanonicalTarget } from './path.js';

/** A route the profile did not refuse. */
export type CheckedRoute = DockerRoute & { refuse?: undefined };

/**
 * The profile's checks of a request that needs no more reading (the API version, the body,
 * the effective state): refused, or passed with the full Id of the object checked. Fails
 * closed: a check that throws is a 403.
 */
export async function dockerCheck(
  conn: Conn,
  route: CheckedRoute,
  verdict: Verdict,
  body?: Buffer,
  notEvaluated?: string[],
): Promise<DockerCheck> {
  try {
    const profile = conn.gw.profile;
    // A reload that left `api: docker` behind: the request was routed by a profile that is gone.
    if (profile === undefined) return { refuse: { status: 403, why: 'the Docker profile is no longer in use (the policy was reloaded)' } };
    let owner: string | undefined;
    if (verdict.rule!.dockerLimits?.owner === true) {
      const o = ownerOf(conn);
      if (typeof o !== 'string') return { refuse: { status: 403, why: `the peer's owner is unknown: ${o.why}` } };
      owner = o;
    }
    return await profile.check(route, verdict.rule!.docker!, body, notEvaluated, owner);
  } catch (e) {
    return { refuse: { status: 403, why: `the request cannot be checked: ${(e as Error)?.message}` } };
  }
}

/**
 * Where a request that passed is forwarded: to the object by the full Id its effective
 * state was checked under (start, restart, attach, exec start), so that the object
 * checked is the object acted on; elsewhere, where the client sent it.
 */
export function checkedTarget(t: CanonicalTarget, route: CheckedRoute, checked: DockerCheck): CanonicalTarget {
  if (checked.refuse) return t;
  const target = checked.id === undefined ? t : withSegments(t, forwardSegments(t.segments, route, checked.id));
  return checked.query === undefined ? target : { ...target, query: checked.query };
}

/** The owner name of the connection's peer (docker-owner.ts), or why it is unknown. */
export function ownerOf(conn: Conn): string | { why: string } {
  const c = conn.peer.attempt('container');
  if (!c.ok) return { why: `whether the peer runs in a container is unknown (${c.reason})` };
  if (c.value === null) return ownerName(false, conn.peer.uid, undefined)!;
  if (conn.container instanceof Error) return { why: `its container's Docker name is unknown (${conn.container.message})` };
  const name = ownerName(true, conn.peer.uid, conn.container?.name);
  return name ?? { why: "its container's Docker name was not looked up" };
}

/** The message of a refusal: the daemon's own (an object that does not exist), or the gateway's. */
export function refusalMessage(verdict: Verdict, refusal: Refusal): string {
  return refusal.daemon ?? `secpolicy: ${verdict.rule!.name}: ${refusal.why}`;
}

/** Docker's media type of attach streams (and of the errors an attach answers with). */
const RAW_STREAM = 'application/vnd.docker.raw-stream';

/**
 * The head and body of the daemon's own answer to an attach it cannot make (`status`,
 * the error as text on the raw stream, then the connection closed), when a refusal is
 * the daemon's answer on a stream endpoint; else undefined.
 */
export function rawStreamAnswer(route: CheckedRoute, refusal: Refusal): { contentType: string; body: string } | undefined {
  if (refusal.daemon === undefined || route.endpoint.kind !== 'stream') return undefined;
  return { contentType: RAW_STREAM, body: `${refusal.daemon}\r\n` };
}

/** Answers a refused request: as the daemon does for an object that does not exist, else the gateway's JSON message. */
export function replyRefusal(conn: Conn, res: http.ServerResponse, verdict: Verdict, route: CheckedRoute, refusal: Refusal): void {
  const raw = rawStreamAnswer(route, refusal);
  if (raw === undefined) return reply(conn.gw, res, refusal.status, refusalMessage(verdict, refusal));
  res.writeHead(refusal.status, { 'Content-Type': raw.contentType, Connection: 'close' }).end(raw.body);
}

/** A failure after the checks (in the answer or the forwarding): a 500, or a cut connection once an answer began. */
export function onDockerError(conn: Conn, res: http.ServerResponse): (e: unknown) => void {
  return (e) => {
    if (!res.headersSent) reply(conn.gw, res, 500, `secpolicy: internal error: ${(e as Error)?.message}`, true);
    else res.destroy();
  };
}

/** Why a body larger than `max` is refused (413). */
export function tooLargeWhy(label: string, max: number): string {
  return `the ${label} body is larger than ${max} bytes and cannot be checked`;
}

/** Reads an inspected body (bounded), checks it, then forwards or refuses it. */
export function inspect(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  conn: Conn,
  t: CanonicalTarget,
  path: string,
  verdict: Verdict,
  route: CheckedRoute,
): void {
  const gw = conn.gw;
  const log = gw.recording;
  const audit = gw.audit;
  const method = req.method!;
  const max = gw.policy.maxBodyBytes;
  const endpoint = route.label;
  const declared = req.headers['content-length'];
  const chunks: Buffer[] = [];
  let size = 0;
  const tooLarge = (): void => {
    const why = tooLargeWhy(endpoint, max);
    if (log) note(res, entry(conn, method, path, { ...verdict, allowed: false }, why, audit, audit ? undefined : 413));
    if (audit) return forward(req, res, conn, t, verdict, undefined, chunks);
    req.pause();
    reply(gw, res, 413, `secpolicy: ${verdict.rule!.name}: ${why}`, true);
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
    dockerCheck(conn, route, verdict, body).then(
      (checked) => {
        const refusal = checked.refuse;
        if (refusal === undefined) {
          if (log) note(res, entry(conn, method, path, verdict, allowedReason(verdict), true));
          return forward(req, res, conn, checkedTarget(t, route, checked), verdict, checked.body ?? body, undefined, checked.answer);
        }
        if (log)
          note(res, entry(conn, method, path, { ...verdict, allowed: false }, refusal.why, audit, audit ? undefined : refusal.status));
        if (audit) return forward(req, res, conn, t, verdict, body);
        replyRefusal(conn, res, verdict, route, refusal);
      },
      onDockerError(conn, res),
    );
  };
  req.on('data', onData);
  req.on('end', onEnd);
}
