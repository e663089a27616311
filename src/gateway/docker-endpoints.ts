/**
 * The endpoints of the Docker Engine API (1.41, moby's api/swagger.yaml) and what the
 * profile does with each for a rule with `docker:` limits. An endpoint that is not here,
 * or is here as `refuse`, is refused whatever the rule's allow patterns say.
 */
import type { BodyModel } from './docker-model.js';

/**
 * - `read`: forwarded; it may not carry a body.
 * - `plain`: changes something, but nothing about what runs or is mounted; no body.
 * - `body`: its JSON body is decoded with the model and checked.
 * - `stream`: its body (or the upgraded stream) is data for a process of the container.
 * - `refuse`: not modelled (or root-equivalent): refused.
 */
export type EndpointKind = 'read' | 'plain' | 'body' | 'stream' | 'refuse';

export interface Endpoint {
  method: string;
  /** The path template, as in the API's specification. */
  path: string;
  kind: EndpointKind;
  /** For `body`: the model of the body. */
  body?: BodyModel;
  /** Before forwarding, the effective state of the container (or exec) is checked with the daemon. */
  effective?: 'container' | 'exec';
  /** For `refuse`: why. */
  why?: string;
  /** Query parameters that make the request refused, with why. */
  refuseQuery?: Record<string, string>;
}

const ROOT = 'root-equivalent or not modelled';

function e(method: string, path: string, kind: EndpointKind, more: Partial<Endpoint> = {}): Endpoint {
  return { method, path, kind, ...more };
}

/** Every endpoint of API 1.41 (test/gateway/docker-model.test.ts compares with the specification). */
export const ENDPOINTS: readonly Endpoint[] = [
  e('GET', '/containers/json', 'read'),
  e('POST', '/containers/create', 'body', { body: 'create' }),
  e('GET', '/containers/{id}/json', 'read'),
  e('GET', '/containers/{id}/top', 'read'),
  e('GET', '/containers/{id}/logs', 'read'),
  e('GET', '/containers/{id}/changes', 'read'),
  e('GET', '/containers/{id}/export', 'read'),
  e('GET', '/containers/{id}/stats', 'read'),
  e('POST', '/containers/{id}/resize', 'plain'),
  e('POST', '/containers/{id}/start', 'plain', {
    effective: 'container',
    refuseQuery: { checkpoint: 'restores a checkpoint', 'checkpoint-dir': 'restores a checkpoint from a host directory' },
  }),
  e('POST', '/containers/{id}/stop', 'plain'),
  e('POST', '/containers/{id}/restart', 'plain', { effective: 'container' }),
  e('POST', '/containers/{id}/kill', 'plain'),
  e('POST', '/containers/{id}/update', 'body', { body: 'update' }),
  e('POST', '/containers/{id}/rename', 'plain'),
  e('POST', '/containers/{id}/pause', 'plain'),
  e('POST', '/containers/{id}/unpause', 'plain'),
  e('POST', '/containers/{id}/attach', 'stream', { effective: 'container' }),
  e('GET', '/containers/{id}/attach/ws', 'stream', { effective: 'container' }),
  e('POST', '/containers/{id}/wait', 'plain'),
  e('DELETE', '/containers/{id}', 'plain'),
  e('HEAD', '/containers/{id}/archive', 'read'),
  e('GET', '/containers/{id}/archive', 'read'),
  e('PUT', '/containers/{id}/archive', 'refuse', {
    why: 'the daemon extracts the archive as root along paths of the container (not modelled)',
  }),
  e('POST', '/containers/prune', 'plain'),
  e('GET', '/images/json', 'read'),
  e('POST', '/build', 'refuse', { why: 'image builds run containers the profile does not see (not modelled)' }),
  e('POST', '/build/prune', 'refuse', { why: 'not modelled' }),
  e('POST', '/images/create', 'plain', { refuseQuery: { fromSrc: 'imports an image from a tarball (not modelled)' } }),
  e('GET', '/images/{name}/json', 'read'),
  e('GET', '/images/{name}/history', 'read'),
  e('POST', '/images/{name}/push', 'plain'),
  e('POST', '/images/{name}/tag', 'plain'),
  e('DELETE', '/images/{name}', 'plain'),
  e('GET', '/images/search', 'read'),
  e('POST', '/images/prune', 'plain'),
  e('POST', '/auth', 'refuse', { why: 'not modelled' }),
  e('GET', '/info', 'read'),
  e('GET', '/version', 'read'),
  e('GET', '/_ping', 'read'),
  e('HEAD', '/_ping', 'read'),
  e('POST', '/commit', 'refuse', { why: 'commits a container to an image (not modelled)' }),
  e('GET', '/events', 'read'),
  e('GET', '/system/df', 'read'),
  e('GET', '/images/{name}/get', 'read'),
  e('GET', '/images/get', 'read'),
  e('POST', '/images/load', 'refuse', { why: 'loads images from a tarball (not modelled)' }),
  e('POST', '/containers/{id}/exec', 'body', { body: 'exec' }),
  e('POST', '/exec/{id}/start', 'body', { body: 'execStart', effective: 'exec' }),
  e('POST', '/exec/{id}/resize', 'plain'),
  e('GET', '/exec/{id}/json', 'read'),
  e('GET', '/volumes', 'read'),
  e('POST', '/volumes/create', 'body', { body: 'volumeCreate' }),
  e('GET', '/volumes/{name}', 'read'),
  e('DELETE', '/volumes/{name}', 'plain'),
  e('POST', '/volumes/prune', 'plain'),
  e('GET', '/networks', 'read'),
  e('GET', '/networks/{id}', 'read'),
  e('DELETE', '/networks/{id}', 'plain'),
  e('POST', '/networks/create', 'refuse', { why: 'network drivers and options reach the host network (not modelled)' }),
  e('POST', '/networks/{id}/connect', 'refuse', { why: 'not modelled' }),
  e('POST', '/networks/{id}/disconnect', 'refuse', { why: 'not modelled' }),
  e('POST', '/networks/prune', 'plain'),
  ...['GET /plugins', 'GET /plugins/privileges', 'POST /plugins/pull', 'GET /plugins/{name}/json', 'DELETE /plugins/{name}'].map(
    refused('plugins'),
  ),
  ...['POST /plugins/{name}/enable', 'POST /plugins/{name}/disable', 'POST /plugins/{name}/upgrade', 'POST /plugins/create'].map(
    refused('plugins'),
  ),
  ...['POST /plugins/{name}/push', 'POST /plugins/{name}/set'].map(refused('plugins')),
  ...['GET /nodes', 'GET /nodes/{id}', 'DELETE /nodes/{id}', 'POST /nodes/{id}/update'].map(refused('swarm')),
  ...['GET /swarm', 'POST /swarm/init', 'POST /swarm/join', 'POST /swarm/leave', 'POST /swarm/update'].map(refused('swarm')),
  ...['GET /swarm/unlockkey', 'POST /swarm/unlock'].map(refused('swarm')),
  ...['GET /services', 'POST /services/create', 'GET /services/{id}', 'DELETE /services/{id}'].map(refused('swarm')),
  ...['POST /services/{id}/update', 'GET /services/{id}/logs', 'GET /tasks', 'GET /tasks/{id}', 'GET /tasks/{id}/logs'].map(
    refused('swarm'),
  ),
  ...['GET /secrets', 'POST /secrets/create', 'GET /secrets/{id}', 'DELETE /secrets/{id}', 'POST /secrets/{id}/update'].map(
    refused('swarm'),
  ),
  ...['GET /configs', 'POST /configs/create', 'GET /configs/{id}', 'DELETE /configs/{id}', 'POST /configs/{id}/update'].map(
    refused('swarm'),
  ),
  e('GET', '/distribution/{name}/json', 'read'),
  e('POST', '/session', 'refuse', { why: 'a build session (not modelled)' }),
];

function refused(area: 'plugins' | 'swarm'): (spec: string) => Endpoint {
  const why =
    area === 'plugins' ? `plugins run with the privileges they ask for (${ROOT})` : `swarm services, secrets and configs are not modelled`;
  return (spec) => {
    const [method, path] = spec.split(' ') as [string, string];
    return e(method, path, 'refuse', { why });
  };
}

interface Compiled {
  endpoint: Endpoint;
  /** Literal segments (lower case), or null for a placeholder (one or more segments, as the daemon's `{name:.*}`). */
  parts: Array<string | null>;
}

const COMPILED: Compiled[] = ENDPOINTS.map((endpoint) => ({
  endpoint,
  parts: endpoint.path
    .slice(1)
    .split('/')
    .map((s) => (s.startsWith('{') ? null : s.toLowerCase())),
}));

function matches(parts: ReadonlyArray<string | null>, segments: readonly string[], i = 0, j = 0): boolean {
  if (i === parts.length) return j === segments.length;
  const part = parts[i];
  if (part === null) {
    // A placeholder takes at least one segment, leaving enough for the literal parts after it.
    for (let end = j + 1; end <= segments.length; end++) if (matches(parts, segments, i + 1, end)) return true;
    return false;
  }
  return j < segments.length && segments[j]!.toLowerCase() === part && matches(parts, segments, i + 1, j + 1);
}

/**
 * The endpoint a request goes to (path segments without the version prefix), or why none.
 * Literal segments are compared without regard to case, like the rules' patterns; a
 * placeholder takes one or more segments, as the daemon's routes do. A path two
 * templates fit (beyond a literal one) is refused as ambiguous. `id` is what the
 * placeholder took, `idAt` the index of its first segment (-1 without a placeholder).
 */
export function findEndpoint(
  method: string,
  segments: readonly string[],
): { endpoint: Endpoint; id: string[]; idAt: number } | { why: string } {
  const method2 = method === 'HEAD' ? 'GET' : method;
  const found = COMPILED.filter((c) => (c.endpoint.method === method || c.endpoint.method === method2) && matches(c.parts, segments));
  // An exact HEAD entry wins over the GET it follows.
  const exactMethod = found.filter((c) => c.endpoint.method === method);
  const pool = exactMethod.length > 0 ? exactMethod : found;
  const literal = pool.filter((c) => !c.parts.includes(null));
  const pick = literal.length === 1 ? literal : pool;
  if (pick.length !== 1) {
    const path = '/' + segments.join('/');
    return {
      why:
        pick.length === 0
          ? `${method} ${path} is not an endpoint the Docker profile models`
          : `${method} ${path} fits more than one endpoint`,
    };
  }
  const c = pick[0]!;
  const at = c.parts.indexOf(null);
  // The id: what the placeholder took (the segments between the literal ones around it).
  const id = at < 0 ? [] : segments.slice(at, segments.length - (c.parts.length - at - 1));
  return { endpoint: c.endpoint, id, idAt: at };
}
