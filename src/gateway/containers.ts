/**
 * The Docker name and labels of a peer's container, for rules that name containers:
 * looked up through the upstream's inspect endpoint, cached briefly.
 */
import * as http from 'node:http';
import type { Conn } from './context.js';
import { peerContainer } from './identity.js';
import type { ContainerInfo } from './policy.js';

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

  constructor(
    readonly agent: http.Agent,
    readonly target: string,
    readonly ttl: number,
  ) {}

  cached(c: { runtime: string; id: string }): ContainerInfo | Error | undefined {
    if (c.runtime !== 'docker') return new Error(`a ${c.runtime} container is not known to the Docker API`);
    const hit = this.#cache.get(c.id);
    if (hit && Date.now() < hit.until) return hit.value;
    return undefined;
  }

  resolve(c: { runtime: string; id: string }): Promise<ContainerInfo | Error> {
    let p = this.#pending.get(c.id);
    if (p) return p;
    p = this.#lookup(c.id).then((value) => {
      this.#pending.delete(c.id);
      if (this.#cache.size >= 1024) this.#cache.clear();
      this.#cache.set(c.id, { until: Date.now() + this.ttl, value });
      return value;
    });
    this.#pending.set(c.id, p);
    return p;
  }

  #lookup(id: string): Promise<ContainerInfo | Error> {
    return new Promise((resolve) => {
      const req = http.get(
        {
          agent: this.agent,
          socketPath: this.target,
          path: `/containers/${encodeURIComponent(id)}/json`,
          headers: { Host: 'docker' },
          timeout: 2000,
        } as http.RequestOptions,
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > 4 * 1024 * 1024) req.destroy(new Error('container inspect answer too large'));
            else chunks.push(c);
          });
          res.on('end', () => {
            if (res.statusCode !== 200) return resolve(new Error(`the Docker API answered ${res.statusCode} for container ${id}`));
            try {
              const data = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { Name?: unknown; Config?: { Labels?: unknown } };
              const labels = data.Config?.Labels;
              resolve({
                name: typeof data.Name === 'string' ? data.Name.replace(/^\//, '') : '',
                labels: typeof labels === 'object' && labels !== null ? (labels as Record<string, string>) : {},
              });
            } catch (e) {
              resolve(new Error(`unreadable container inspect answer: ${(e as Error).message}`));
            }
          });
          res.on('error', (e) => resolve(e));
        },
      );
      req.on('timeout', () => req.destroy(new Error('the Docker API did not answer in time')));
      req.on('error', (e) => resolve(e));
    });
  }
}
