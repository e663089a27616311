/**
 * Inspected bodies: read whole (bounded by `maxBodyBytes`), checked by the rule's Docker
 * limits, and forwarded only as the exact bytes that were checked.
 */
import type http from 'node:http';
import { allowedReason, entry, note, reply, type Conn, type Verdict } from './context.js';
import type { DockerEndpoint } from './docker.js';
import { forward } from './forward.js';
import { GoJsonError } from './gojson.js';
import type { CanonicalTarget } from './path.js';

/**
 * Why the rule refuses this body, or undefined when it passes. Throws when the body
 * cannot be checked (a GoJsonError when it is not what the daemon would decode).
 */
export function checkBody(verdict: Verdict, endpoint: DockerEndpoint, body: Buffer): string | undefined {
  return verdict.rule!.docker!.check(endpoint, body);
}

/** Why a body larger than `max` is refused (413). */
export function tooLargeWhy(endpoint: DockerEndpoint, max: number): string {
  return `the ${endpoint} body is larger than ${max} bytes and cannot be checked`;
}

/**
 * The rule's answer on a whole body: undefined when it passes, else why and the status
 * (403; 400 for a body the daemon would not decode). Fails closed: a body that cannot be
 * checked is refused.
 */
export function judgeBody(verdict: Verdict, endpoint: DockerEndpoint, body: Buffer): { why: string; status: number } | undefined {
  try {
    const why = checkBody(verdict, endpoint, body);
    return why === undefined ? undefined : { why, status: 403 };
  } catch (e) {
    return e instanceof GoJsonError
      ? { why: `the ${endpoint} body is refused: ${e.message}`, status: 400 }
      : { why: `the ${endpoint} body cannot be checked: ${(e as Error)?.message}`, status: 403 };
  }
}

/** Reads an inspected body (bounded), checks it, then forwards or refuses it. */
export function inspect(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  conn: Conn,
  t: CanonicalTarget,
  path: string,
  verdict: Verdict,
  endpoint: DockerEndpoint,
): void {
  const gw = conn.gw;
  const log = gw.recording;
  const audit = gw.audit;
  const method = req.method!;
  const max = gw.policy.maxBodyBytes;
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
    const refused = judgeBody(verdict, endpoint, body);
    if (refused === undefined) {
      if (log) note(res, entry(conn, method, path, verdict, allowedReason(verdict), true));
      return forward(req, res, conn, t, verdict, body);
    }
    const { why, status } = refused;
    if (log) note(res, entry(conn, method, path, { ...verdict, allowed: false }, why, audit, audit ? undefined : status));
    if (audit) return forward(req, res, conn, t, verdict, body);
    reply(gw, res, status, `secpolicy: ${verdict.rule!.name}: ${why}`);
  };
  req.on('data', onData);
  req.on('end', onEnd);
}
