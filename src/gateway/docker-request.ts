/**
 * The Docker profile's decision for one request of a rule with `docker:` limits, in two
 * steps the gateway calls: {@link DockerProfile.route} (at once, from the method, path,
 * query and framing: refused, or what to do) and {@link DockerProfile.check} (once the
 * body, if any, has been read: the API version, the body and the effective state). A
 * request whose effective state was checked is forwarded to the object's full Id
 * ({@link forwardSegments}).
 */
import type { DockerChecker, Refusal } from './docker.js';
import { checkContainer, checkExec, type UpstreamGet } from './docker-effective.js';
import { findEndpoint, type Endpoint } from './docker-endpoints.js';
import { API_WINDOW } from './docker-model.js';
import { ownerCheck, type OwnerCheck } from './docker-owner.js';
import { outsideWindow, pathVersion } from './docker-version.js';

/**
 * What to do with a request: refuse it, or read its body (when `body`) and then
 * {@link DockerProfile.check} it. `id` is the object the path names (as the client named
 * it), `idAt` the index of its first segment in the request's segments.
 */
export type DockerRoute =
  | { refuse: Refusal }
  | {
      refuse?: undefined;
      endpoint: Endpoint;
      id: string[];
      idAt: number;
      version: string | undefined;
      body: boolean;
      label: string;
      /** The request's raw query (`?a=b` or empty). */
      query: string;
    };

/**
 * The outcome of {@link DockerProfile.check}: refused, or passed, with the full Id of the
 * object whose effective state was checked and, for an owner rule, what to forward instead.
 */
export type DockerCheck = OwnerCheck;

const VERSION = /^v[0-9.]+$/;

/**
 * The profile of one gateway: asks the daemon its API version once, and its objects' state
 * per request. Without a daemon (`secpolicy explain` without `--to`) an unversioned request
 * is read as the newest version the profile models, and the checks that read the daemon are
 * named as not evaluated instead of made.
 */
export class DockerProfile {
  readonly #get: UpstreamGet | undefined;
  #daemon: Promise<string> | undefined;

  constructor(get: UpstreamGet | undefined) {
    this.#get = get;
  }

  /**
   * Decides what it can without the body or the daemon. `segments` are the canonical
   * path's, version prefix included; `query` the raw query (`?a=b` or empty); `hasBody`
   * whether the request is framed with a body (a Content-Length above 0 or chunked).
   */
  route(method: string, segments: readonly string[], query: string, hasBody: boolean): DockerRoute {
    const version = pathVersion(segments);
    const rest = version === undefined ? segments : segments.slice(1);
    if (rest.length > 1 && VERSION.test(rest[0]!)) return refuse(400, 'a path with more than one API version prefix');
    const found = findEndpoint(method, rest);
    if ('why' in found) return refuse(403, found.why);
    const { endpoint, id } = found;
    const idAt = found.idAt < 0 ? -1 : found.idAt + (version === undefined ? 0 : 1);
    const label = `${endpoint.method} ${endpoint.path}`;
    if (endpoint.kind === 'refuse') return refuse(403, `${label} is refused for a rule with docker limits: ${endpoint.why}`);
    if (endpoint.refuseQuery && query.length > 1) {
      const params = new URLSearchParams(query.slice(1));
      for (const [name, why] of Object.entries(endpoint.refuseQuery)) {
        // Go's form parsing takes the key as given (case-sensitive): any value but none counts.
        if (params.has(name) && params.getAll(name).some((v) => v !== '')) return refuse(403, `${label} with ${name}= ${why}`);
      }
    }
    if (hasBody && (endpoint.kind === 'read' || endpoint.kind === 'plain'))
      return refuse(
        403,
        `${label} takes no body for a rule with docker limits${endpoint.path.endsWith('/start') ? ' (below API 1.24 a start body is a new host config)' : ''}`,
      );
    return { endpoint, id, idAt, version, body: endpoint.kind === 'body', label, query };
  }

  /**
   * The API version, the body (bytes exactly as they will be forwarded) and the effective
   * state. A request whose object does not exist is refused with the daemon's own 404.
   * Without a daemon, what needs it is added to `notEvaluated`. `owner`, for a rule with
   * `owner: true`, is the caller's owner name: the objects the request names must be its
   * (docker-owner.ts), and the request goes on to the full Id they were found under.
   */
  async check(
    route: DockerRoute & { refuse?: undefined },
    checker: DockerChecker,
    body: Uint8Array | undefined,
    notEvaluated?: string[],
    owner?: string,
  ): Promise<DockerCheck> {
    let daemon: string;
    if (this.#get === undefined) {
      daemon = API_WINDOW.max;
      notEvaluated?.push(`the daemon's API version (read as ${daemon}, the newest the Docker profile models: give --to)`);
    } else {
      try {
        daemon = await this.daemonVersion();
      } catch (e) {
        return refuse(502, `the daemon's API version is unknown (${(e as Error).message})`);
      }
    }
    const newer = outsideWindow(daemon, "the daemon's API version");
    if (newer) return refuse(403, newer);
    const why = outsideWindow(
      route.version ?? daemon,
      route.version === undefined ? 'the request (unversioned, read as the daemon’s)' : 'the request’s API version',
    );
    if (why) return refuse(403, why);
    if (route.endpoint.body !== undefined) {
      const refused = checker.checkBody(route.endpoint.body, body ?? new Uint8Array());
      if (refused) return { refuse: refused };
    }
    const get = this.#get;
    let owned: DockerCheck = {};
    if (owner !== undefined) {
      // Without a daemon, what needs no lookup is still checked (forged labels, the filters, what cannot be scoped).
      const lookup: UpstreamGet = get ?? (() => Promise.reject(new NoDaemon()));
      try {
        owned = await ownerCheck(route.endpoint, route.id, route.query, body, owner, lookup);
      } catch (e) {
        if (!(e instanceof NoDaemon)) return refuse(502, `the owner cannot be read from the daemon (${(e as Error).message})`);
        notEvaluated?.push(`the owner of the objects ${route.label} names (the daemon's inspect: give --to)`);
      }
      if (owned.refuse) return owned;
    }
    if (route.endpoint.effective !== undefined && get === undefined) {
      notEvaluated?.push(`the effective state before ${route.label} (the daemon's inspect of the ${route.endpoint.effective}: give --to)`);
      return owned;
    }
    // The object found owned is the one whose state is checked (by its full Id).
    const id = owned.id === undefined ? route.id : [owned.id];
    try {
      if (route.endpoint.effective === 'container') return { ...owned, ...(await checkContainer(checker, id, get!)) };
      if (route.endpoint.effective === 'exec') return { ...owned, ...(await checkExec(checker, id, get!)) };
    } catch (e) {
      return refuse(502, `the effective state cannot be read from the daemon (${(e as Error).message})`);
    }
    return owned;
  }

  /** The daemon's API version, asked once from GET /version (asked again after a failure). */
  daemonVersion(): Promise<string> {
    const get = this.#get;
    if (get === undefined) return Promise.reject(new Error('no daemon to ask'));
    if (this.#daemon === undefined) {
      const p = get('/version').then((r) => {
        const v = (r.json as { ApiVersion?: unknown } | null)?.ApiVersion;
        if (r.status !== 200 || typeof v !== 'string' || !/^[0-9.]+$/.test(v)) throw new Error(`GET /version answered ${r.status}`);
        return v;
      });
      // A failure is not kept: the next request asks again.
      p.catch(() => {
        if (this.#daemon === p) this.#daemon = undefined;
      });
      this.#daemon = p;
    }
    return this.#daemon;
  }
}

/** A lookup asked of no daemon (`secpolicy explain` without `--to`). */
class NoDaemon extends Error {}

function refuse(status: 400 | 403 | 502, why: string): { refuse: Refusal } {
  return { refuse: { status, why } };
}

/**
 * The request's path segments with the object named by the full Id its effective-state
 * check found (in place of the name or Id prefix the client used), so the object checked
 * is the object acted on; the segments unchanged when there was no such check.
 */
export function forwardSegments(
  segments: readonly string[],
  route: DockerRoute & { refuse?: undefined },
  id: string | undefined,
): string[] {
  if (id === undefined || route.idAt < 0) return [...segments];
  return [...segments.slice(0, route.idAt), id, ...segments.slice(route.idAt + route.id.length)];
}

export { API_WINDOW };
