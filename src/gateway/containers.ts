/**
 * The Docker name and labels of a peer's container, for rules that name containers:
 * looked up through the upstream's inspect endpoint, cached briefly.
 */
import * as http from 'node:http';
import type { Conn } from './context.js';
import { peerContainer } from './identity.js';
import type { ContainerInfo } from './policy.js';
import { upstreamGet, type UpstreamGet } from './docker-effective.js';

/**
 * Resolves the peer's container through the Docker API when a rule needs its name: a
 * promise while a lookup runs, undefined when nothing is to wait for.
 */
export function prepare(conn: Conn): Promise<void> | undefined {
  if (!conn.gw.needsNames) return undefined;
  // Read from /proc once per connection (as the log and the identity headers read it).
  const container = peerContainer(conn.peer);
  if (container === undefined || container === null) return undefined;
  const resolver = conn.gw.resolver;
  const cached = resolver.cached(container);
  if (cached !== undefined) {
    resolved(conn, cached);
    return undefined;
  }
  return resolver.resolve(container).then((info) => resolved(conn, info));
}

/** The connection's container as looked up now: the log names it from here on. */
function resolved(conn: Conn, info: ContainerInfo | Error): void {
  if (info === conn.container) return;
  conn.container = info;
  conn.logPeer = undefined;
}

/** Docker names and labels of containers, cached briefly, looked up through the upstream. */
export class ContainerResolver {
  readonly #cache = new Map<string, { until: number; value: ContainerInfo | Error }>();
  readonly #pending = new Map<string, Promise<ContainerInfo | Error>>();

  readonly #get: UpstreamGet;

  constructor(
    agent: http.Agent,
    target: string,
    readonly ttl: number,
  ) {
    this.#get = upstreamGet(agent, target, 2000);
  }

  cached(c: { runtime: string; id: string }): ContainerInfo | Error | undefined {
    if (c.runtime !== 'docker') return new Error(`a ${c.runtime} container is not known to the Docker API`);
    const hit = this.#cache.get(c.id);
    if (hit && Date.now() < hit.until) return hit.value;
    return undefined;
  }

  resolve(c: { runtime: string; id: string }): Promise<ContainerInfo | Error> {
    let p = this.#pending.get(c.id);
    if (p) return p;
    p = inspectContainer(this.#get, c.id).then((value) => {
      this.#pending.delete(c.id);
      if (this.#cache.size >= 1024) this.#cache.clear();
      this.#cache.set(c.id, { until: Date.now() + this.ttl, value });
      return value;
    });
    this.#pending.set(c.id, p);
    return p;
  }
}

/**
 * The Docker name and labels of a container (by Id or name) from the daemon's inspect; an
 * Error (never a rejection) when the daemon cannot say.
 */
export async function inspectContainer(get: UpstreamGet, idOrName: string): Promise<ContainerInfo | Error> {
  try {
    const r = await get(`/containers/${encodeURIComponent(idOrName)}/json`);
    if (r.status !== 200) return new Error(`the Docker API answered ${r.status} for container ${idOrName}`);
    const data = r.json as { Name?: unknown; Config?: { Labels?: unknown } } | null;
    const labels = data?.Config?.Labels;
    return {
      name: typeof data?.Name === 'string' ? data.Name.replace(/^\//, '') : '',
      labels: typeof labels === 'object' && labels !== null ? (labels as Record<string, string>) : {},
    };
  } catch (e) {
    return e as Error;
  }
}
