/**
 * Owners: one dockerd, many tenants. For a rule with `docker: { owner: true }`, every
 * container, volume and network its peers create carries the label
 * `org.secpolicy.owner=<owner>` (set here, never by the client), and every request that
 * names such an object, directly or inside a create body, goes through only when the
 * object's owner label is the caller's; anything else is the daemon's own "No such ..."
 * answer, so that others' objects are not revealed. Listings and the event stream are
 * scoped twice: the `filters` query is rewritten (the daemon filters), and what comes back
 * is checked object by object (forward.ts, with {@link ownedAnswer}).
 *
 * Objects are looked up through the daemon's own inspect (which resolves full Ids, names
 * and Id prefixes as the daemon does, an ambiguous prefix included), and the request is
 * forwarded to the full Id the inspect returned: the object checked is the object acted on.
 */
import type { Refusal } from './docker.js';
import { entries, list, str } from './docker.js';
import type { UpstreamGet } from './docker-effective.js';
import type { Endpoint } from './docker-endpoints.js';
import { BODIES } from './docker-model.js';
import { decodeGo, parseGoJson, type GoStruct } from './gojson.js';

/** The label that names an object's owner. */
export const OWNER_LABEL = 'org.secpolicy.owner';

/** The kinds of answers checked object by object. */
export type OwnedAnswerKind = 'containers' | 'volumes' | 'networks' | 'events';

/** An answer to check: its kind, and whose objects it may hold. */
export interface OwnedAnswer {
  kind: OwnedAnswerKind;
  owner: string;
}

/** What the owner check makes of a request: refused, or passed (with what to forward instead). */
export type OwnerCheck =
  | { refuse: Refusal }
  | {
      refuse?: undefined;
      /** The full Id (or a volume's name) the object named by the path was found under. */
      id?: string;
      /** The body to forward: what was checked plus the owner label. */
      body?: Buffer;
      /** The query to forward (`?...`), with the owner filter. */
      query?: string;
      /** The answer to check object by object. */
      answer?: OwnedAnswer;
    };

/** The daemon's own messages for an object that does not exist (API 1.41). */
const MISSING = {
  container: (x: string): string => `No such container: ${x}`,
  exec: (x: string): string => `No such exec instance: ${x}`,
  volume: (x: string): string => `get ${x}: no such volume`,
  network: (x: string): string => `network ${x} not found`,
};

function missing(kind: keyof typeof MISSING, name: string): { refuse: Refusal } {
  const message = MISSING[kind](name);
  return { refuse: { status: 404, why: `${message} (not found, or not owned by the caller)`, daemon: message } };
}

function refuse(status: 400 | 403 | 502, why: string): { refuse: Refusal } {
  return { refuse: { status, why } };
}

/** The labels of an object as the daemon reports it. */
function labelsOf(o: unknown): Record<string, unknown> {
  const c = o as { Labels?: unknown; Config?: { Labels?: unknown } } | null;
  const labels = c?.Config !== undefined ? c.Config?.Labels : c?.Labels;
  return typeof labels === 'object' && labels !== null ? (labels as Record<string, unknown>) : {};
}

/** Whether an object as the daemon reports it (inspect, listing entry) is `owner`'s. */
export function ownedBy(o: unknown, owner: string): boolean {
  return labelsOf(o)[OWNER_LABEL] === owner;
}

const FULL_ID = /^[0-9a-f]{64}$/;

/** Looks up a container as the daemon resolves `name`: its full Id when it is `owner`'s. */
export async function ownedContainer(name: string, owner: string, get: UpstreamGet): Promise<{ refuse: Refusal } | { id: string }> {
  if (name === '') return missing('container', name);
  const r = await get(`/containers/${encodeURIComponent(name)}/json`);
  // Not found, or an ambiguous prefix (the daemon's 400 or 404): the caller's answer is the same.
  if (r.status === 404 || r.status === 400) return missing('container', name);
  if (r.status !== 200) return refuse(502, `the container ${name} cannot be looked up: the daemon answered ${r.status}`);
  const c = r.json as { Id?: unknown };
  if (typeof c.Id !== 'string' || !FULL_ID.test(c.Id)) return refuse(502, "the daemon does not say the container's full Id");
  if (!ownedBy(r.json, owner)) return missing('container', name);
  return { id: c.Id };
}

async function ownedExec(name: string, owner: string, get: UpstreamGet): Promise<{ refuse: Refusal } | { id: string }> {
  const r = await get(`/exec/${encodeURIComponent(name)}/json`);
  if (r.status === 404 || r.status === 400) return missing('exec', name);
  if (r.status !== 200) return refuse(502, `the exec ${name} cannot be looked up: the daemon answered ${r.status}`);
  const e = r.json as { ID?: unknown; ContainerID?: unknown };
  if (typeof e.ID !== 'string' || !FULL_ID.test(e.ID) || typeof e.ContainerID !== 'string')
    return refuse(502, "the daemon does not say the exec's full Id and container");
  const c = await ownedContainer(e.ContainerID, owner, get);
  if ('refuse' in c) return c.refuse.status === 404 ? missing('exec', name) : c;
  return { id: e.ID };
}

async function ownedVolume(name: string, owner: string, get: UpstreamGet): Promise<{ refuse: Refusal } | { id: string }> {
  const r = await get(`/volumes/${encodeURIComponent(name)}`);
  if (r.status === 404 || r.status === 400) return missing('volume', name);
  if (r.status !== 200) return refuse(502, `the volume ${name} cannot be looked up: the daemon answered ${r.status}`);
  const v = r.json as { Name?: unknown };
  if (typeof v.Name !== 'string' || v.Name === '') return refuse(502, "the daemon does not say the volume's name");
  if (!ownedBy(r.json, owner)) return missing('volume', name);
  return { id: v.Name };
}

async function ownedNetwork(name: string, owner: string, get: UpstreamGet): Promise<{ refuse: Refusal } | { id: string }> {
  const r = await get(`/networks/${encodeURIComponent(name)}`);
  if (r.status === 404 || r.status === 400) return missing('network', name);
  if (r.status !== 200) return refuse(502, `the network ${name} cannot be looked up: the daemon answered ${r.status}`);
  const n = r.json as { Id?: unknown };
  if (typeof n.Id !== 'string' || !FULL_ID.test(n.Id)) return refuse(502, "the daemon does not say the network's full Id");
  if (!ownedBy(r.json, owner)) return missing('network', name);
  return { id: n.Id };
}

/** The listings and the event stream: scoped by the filters query and checked object by object. */
const LISTINGS: Record<string, OwnedAnswerKind> = {
  '/containers/json': 'containers',
  '/volumes': 'volumes',
  '/networks': 'networks',
  '/events': 'events',
};

/** Prunes: scoped by the filters query (the daemon removes only what matches). */
const PRUNES = new Set(['/containers/prune', '/volumes/prune', '/networks/prune']);

/** Endpoints that would show or change every tenant's objects and cannot be scoped. */
const UNSCOPED: Record<string, string> = {
  'GET /system/df': "the disk usage lists every tenant's containers and volumes",
  // Images are shared: a tag moved, or an image removed, is so for every tenant (whose next run would use another image).
  'POST /images/{name}/tag': 'images are shared by every tenant: a tag would change what their names run',
  'DELETE /images/{name}': 'images are shared by every tenant: a removal would remove them for all',
  'POST /images/prune': 'images are shared by every tenant: a prune would remove them for all',
};

/**
 * The owner check of a modelled, allowed request (after the body's model check):
 * `owner` is the caller's, `body` the bytes that were checked.
 */
export async function ownerCheck(
  endpoint: Endpoint,
  id: readonly string[],
  query: string,
  body: Uint8Array | undefined,
  owner: string,
  get: UpstreamGet,
): Promise<OwnerCheck> {
  const path = endpoint.path;
  const unscoped = UNSCOPED[`${endpoint.method} ${path}`];
  if (unscoped !== undefined) return refuse(403, `${endpoint.method} ${path} is refused for an owner rule: ${unscoped}`);
  const listing = LISTINGS[path];
  if (listing !== undefined || PRUNES.has(path)) {
    const scoped = scopedQuery(query, owner);
    if (typeof scoped !== 'string') return scoped;
    return { query: scoped, ...(listing !== undefined && { answer: { kind: listing, owner } }) };
  }
  const name = id.join('/');
  if (path.startsWith('/containers/{id}')) return ownedContainer(name, owner, get);
  if (path.startsWith('/exec/{id}')) return ownedExec(name, owner, get);
  if (path.startsWith('/volumes/{name}')) return ownedVolume(name, owner, get);
  if (path.startsWith('/networks/{id}')) return ownedNetwork(name, owner, get);
  if (path === '/containers/create') return ownedCreate(body ?? new Uint8Array(), owner, get);
  if (path === '/volumes/create') return ownedVolumeCreate(body ?? new Uint8Array(), owner, get);
  return {};
}

// ---- the filters query ----------------------------------------------------------------

/**
 * The request's query with `filters` scoped to `owner`: the client's filters (read as the
 * daemon reads them: a JSON map of lists, or the legacy map of booleans) kept, and the owner
 * label added to its `label` filters (which the daemon combines: every one must match),
 * written in the map-of-booleans form every daemon reads.
 */
export function scopedQuery(query: string, owner: string): string | { refuse: Refusal } {
  const pairs = query.length > 1 ? query.slice(1).split('&') : [];
  const kept: string[] = [];
  let filters: string | undefined;
  for (const pair of pairs) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent((eq < 0 ? pair : pair.slice(0, eq)).replace(/\+/g, ' '));
      value = eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1).replace(/\+/g, ' '));
    } catch {
      return refuse(400, 'the query cannot be read');
    }
    if (key.includes(';') || value.includes(';')) return refuse(400, 'a query with ";" is ambiguous');
    if (key === 'filters') {
      if (filters !== undefined) return refuse(400, 'more than one filters parameter');
      filters = value;
    } else kept.push(pair);
  }
  const map: Record<string, Record<string, boolean>> = {};
  if (filters !== undefined && filters !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(filters);
    } catch {
      return refuse(400, 'the filters parameter is not JSON');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      return refuse(400, 'the filters parameter is not a map of filters');
    for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
      const values: Record<string, boolean> = {};
      if (Array.isArray(v)) {
        for (const x of v) {
          if (typeof x !== 'string') return refuse(400, `the filter ${JSON.stringify(k)} is not a list of strings`);
          values[x] = true;
        }
      } else if (typeof v === 'object' && v !== null) {
        for (const [x, b] of Object.entries(v as Record<string, unknown>)) {
          if (typeof b !== 'boolean') return refuse(400, `the filter ${JSON.stringify(k)} is not a map of booleans`);
          values[x] = true;
        }
      } else return refuse(400, `the filter ${JSON.stringify(k)} is neither a list nor a map`);
      map[k] = values;
    }
  }
  map.label = { ...map.label, [`${OWNER_LABEL}=${owner}`]: true };
  kept.push(`filters=${encodeURIComponent(JSON.stringify(map))}`);
  return '?' + kept.join('&');
}

// ---- create bodies ----------------------------------------------------------------------

/** Network modes and names that are the daemon's own, not objects a tenant owns. */
const BUILTIN_NETWORKS = new Set(['', 'default', 'bridge', 'none', 'host']);

/** Why a named volume of a create cannot be used. */
function volumeNotOwned(name: string): { refuse: Refusal } {
  return refuse(
    403,
    `the volume ${JSON.stringify(name)} is not one of the caller's (create it first with POST /volumes/create; the daemon would create it unlabelled)`,
  );
}

/** Whether the labels of a decoded body hold the owner label. */
function forgesOwner(labels: unknown): boolean {
  return entries(labels).some(([k]) => k === OWNER_LABEL);
}

/**
 * A container create: every object its body names (volumes in Binds and Mounts,
 * containers in VolumesFrom, Links and `container:` modes, networks) must be the caller's,
 * and the body is forwarded with the owner label added.
 */
async function ownedCreate(body: Uint8Array, owner: string, get: UpstreamGet): Promise<OwnerCheck> {
  const node = body.length === 0 ? { t: 'obj' as const, entries: [] } : parseGoJson(body);
  const value = decodeGo(node, BODIES.create, { strict: true });
  if (forgesOwner(value.Labels)) return refuse(403, `the label ${OWNER_LABEL} is set by the gateway, not by the client`);
  const hc = (value.HostConfig as GoStruct | null | undefined) ?? undefined;
  // The top level is read too: dockerd reads it when HostConfig is absent, and copies some of it.
  const configs = hc ? [hc, value] : [value];
  for (const c of configs) {
    for (const bind of list<string>(c.Binds)) {
      const source = bind.split(':')[0] ?? '';
      if (source !== '' && !source.startsWith('/')) {
        const v = await ownedVolume(source, owner, get);
        if ('refuse' in v) return v.refuse.status === 404 ? volumeNotOwned(source) : v;
      }
    }
    for (const m of list<GoStruct>(c.Mounts)) {
      if (forgesOwner((m.VolumeOptions as GoStruct | null | undefined)?.Labels))
        return refuse(403, `the label ${OWNER_LABEL} is set by the gateway, not by the client (Mounts[].VolumeOptions.Labels)`);
      if (str(m.Type) === 'volume' && str(m.Source) !== '') {
        const v = await ownedVolume(str(m.Source), owner, get);
        if ('refuse' in v) return v.refuse.status === 404 ? volumeNotOwned(str(m.Source)) : v;
      }
    }
    const containers: string[] = [];
    for (const from of list<string>(c.VolumesFrom)) containers.push(from.split(':')[0] ?? '');
    for (const link of list<string>(c.Links)) containers.push((link.split(':')[0] ?? '').replace(/^\//, ''));
    for (const mode of ['NetworkMode', 'IpcMode', 'PidMode']) {
      const m = str(c[mode]);
      if (m.startsWith('container:')) containers.push(m.slice('container:'.length));
    }
    for (const name of containers) {
      const found = await ownedContainer(name, owner, get);
      if ('refuse' in found) return found;
    }
    const mode = str(c.NetworkMode);
    if (!BUILTIN_NETWORKS.has(mode) && !mode.startsWith('container:')) {
      const n = await ownedNetwork(mode, owner, get);
      if ('refuse' in n) return n;
    }
  }
  const endpoints = (value.NetworkingConfig as GoStruct | null | undefined)?.EndpointsConfig;
  for (const [name] of entries(endpoints)) {
    if (BUILTIN_NETWORKS.has(name)) continue;
    const n = await ownedNetwork(name, owner, get);
    if ('refuse' in n) return n;
  }
  return { body: withOwnerLabel(body, node.t !== 'obj' || node.entries.length === 0, owner) };
}

/** A volume create: the name must not be another's volume, and the body gets the owner label. */
async function ownedVolumeCreate(body: Uint8Array, owner: string, get: UpstreamGet): Promise<OwnerCheck> {
  const node = body.length === 0 ? { t: 'obj' as const, entries: [] } : parseGoJson(body);
  const value = decodeGo(node, BODIES.volumeCreate, { strict: true });
  if (forgesOwner(value.Labels)) return refuse(403, `the label ${OWNER_LABEL} is set by the gateway, not by the client`);
  const name = str(value.Name);
  if (name !== '') {
    // The daemon answers a create of an existing name with that volume: another's is not the caller's.
    const r = await get(`/volumes/${encodeURIComponent(name)}`);
    if (r.status === 200 && !ownedBy(r.json, owner)) return volumeNotOwned(name);
    if (r.status !== 200 && r.status !== 404) return refuse(502, `the volume ${name} cannot be looked up: the daemon answered ${r.status}`);
  }
  return { body: withOwnerLabel(body, node.t !== 'obj' || node.entries.length === 0, owner) };
}

/**
 * The checked body with `"Labels":{"org.secpolicy.owner":...}` added as the last key of
 * its object. The daemon (Go) decodes a repeated map key into the map an earlier one
 * filled, so the client's labels are kept and the owner label added; the client's own
 * owner label was refused before. `empty`: the object has no keys (or the body is empty).
 */
export function withOwnerLabel(body: Uint8Array, empty: boolean, owner: string): Buffer {
  const label = `"Labels":${JSON.stringify({ [OWNER_LABEL]: owner })}`;
  const b = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (b.length === 0) return Buffer.from(`{${label}}`);
  let end = b.length - 1;
  while (end >= 0 && [0x20, 0x09, 0x0a, 0x0d].includes(b[end]!)) end--;
  // parseGoJson read one object and only whitespace after it: b[end] is its closing brace.
  if (b[end] !== 0x7d) throw new Error('the checked body is not a JSON object');
  return Buffer.concat([b.subarray(0, end), Buffer.from(`${empty ? '' : ','}${label}`), b.subarray(end)]);
}

// ---- answers ------------------------------------------------------------------------

/** A listing's answer with only `owner`'s objects (undefined when it cannot be read: then nothing is sent). */
export function ownedListing(kind: Exclude<OwnedAnswerKind, 'events'>, text: string, owner: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (kind === 'volumes') {
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    const v = parsed as { Volumes?: unknown };
    const volumes = Array.isArray(v.Volumes) ? v.Volumes.filter((x) => ownedBy(x, owner)) : v.Volumes === null ? null : undefined;
    if (volumes === undefined) return undefined;
    return JSON.stringify({ ...v, Volumes: volumes });
  }
  if (!Array.isArray(parsed)) return undefined;
  return JSON.stringify(parsed.filter((x) => ownedBy(x, owner)));
}

/** Whether one event of the stream (a JSON line) is about an object of `owner`'s. */
export function ownedEvent(line: string, owner: string): boolean {
  try {
    const e = JSON.parse(line) as { Actor?: { Attributes?: Record<string, unknown> } };
    return e?.Actor?.Attributes?.[OWNER_LABEL] === owner;
  } catch {
    return false;
  }
}

/** The owner name of a peer: `uid:<n>` on the host, `container:<name>` in a Docker container. */
export function ownerName(inContainer: boolean, uid: number, containerName: string | undefined): string | undefined {
  if (!inContainer) return `uid:${uid}`;
  return containerName === undefined || containerName === '' ? undefined : `container:${containerName}`;
}
