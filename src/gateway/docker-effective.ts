/**
 * The effective state, from the daemon itself: before a container starts, restarts or is
 * attached to, or an exec in it starts, for a rule with `docker:` limits, the container
 * (and the exec, and every named volume it mounts) is inspected through the upstream and
 * the configuration the daemon will use is checked against the limits. A second line,
 * independent of the body checks: what they missed (a legacy field, a volume made behind
 * the gateway, a symlink planted after the create) the daemon's own inspect shows. The
 * inspect names the object by its full Id, which the request is then forwarded to: the
 * object checked is the object acted on, even if a name is moved to another container
 * (rename, or remove and create again) in between.
 */
import * as http from 'node:http';
import type { DockerChecker, Refusal } from './docker.js';
import { list, str } from './docker.js';
import type { GoStruct } from './gojson.js';

/** What the effective state of an object is: refused, or within the limits, with the object's full Id. */
export type Effective = { refuse: Refusal } | { refuse?: undefined; id: string };

/** A full object Id as the daemon reports it (64 hex digits). */
const FULL_ID = /^[0-9a-f]{64}$/;

/** One GET through the upstream, answered with its status and JSON body. */
export type UpstreamGet = (path: string) => Promise<{ status: number; json: unknown }>;

/** Bound on an inspect answer. */
const MAX_ANSWER = 4 * 1024 * 1024;

/** An {@link UpstreamGet} over the gateway's upstream pool. */
export function upstreamGet(agent: http.Agent, socketPath: string, timeoutMs = 5000): UpstreamGet {
  return (path) =>
    new Promise((resolve, reject) => {
      const req = http.get({ agent, socketPath, path, headers: { Host: 'docker' }, timeout: timeoutMs } as http.RequestOptions, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_ANSWER) req.destroy(new Error(`the answer to ${path} is too large`));
          else chunks.push(c);
        });
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode!, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown });
          } catch (e) {
            reject(new Error(`unreadable answer to ${path}: ${(e as Error).message}`));
          }
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`the daemon did not answer ${path} in time`)));
      req.on('error', reject);
    });
}

const idPath = (id: readonly string[]): string => id.map(encodeURIComponent).join('/');

/** Checks the container an exec runs in, and the exec itself. */
export async function checkExec(checker: DockerChecker, id: readonly string[], get: UpstreamGet): Promise<Effective> {
  const r = await get(`/exec/${idPath(id)}/json`);
  if (r.status === 404) return notFound(`No such exec instance: ${id.join('/')}`);
  if (r.status !== 200) return unavailable(`the exec ${id.join('/')}`, r.status);
  const exec = r.json as { ID?: unknown; ContainerID?: unknown; ProcessConfig?: { privileged?: unknown } };
  if (typeof exec.ID !== 'string' || !FULL_ID.test(exec.ID)) return refuse(403, "the daemon does not say the exec's full Id");
  if (!checker.limits.privileged && exec.ProcessConfig?.privileged === true)
    return refuse(403, 'the exec is privileged (as the daemon reports it)');
  if (typeof exec.ContainerID !== 'string' || exec.ContainerID === '')
    return refuse(403, 'the daemon does not say which container the exec runs in');
  const container = await checkContainer(checker, [exec.ContainerID], get);
  if (container.refuse?.status === 404) return unavailable(`the container ${exec.ContainerID} of the exec`, 404);
  return container.refuse ? container : { id: exec.ID };
}

/** Checks a container's configuration as the daemon reports it, and the named volumes it mounts. */
export async function checkContainer(checker: DockerChecker, id: readonly string[], get: UpstreamGet): Promise<Effective> {
  const r = await get(`/containers/${idPath(id)}/json`);
  if (r.status === 404) return notFound(`No such container: ${id.join('/')}`);
  if (r.status !== 200) return unavailable(`the container ${id.join('/')}`, r.status);
  const c = r.json as { Id?: unknown; HostConfig?: GoStruct; Mounts?: unknown };
  if (typeof c.Id !== 'string' || !FULL_ID.test(c.Id)) return refuse(403, "the daemon does not say the container's full Id");
  const why = await checkState(checker, c, get);
  return why ? { refuse: why } : { id: c.Id };
}

/** Checks the host config and mounts of an inspected container, and the named volumes it mounts. */
async function checkState(
  checker: DockerChecker,
  c: { HostConfig?: GoStruct; Mounts?: unknown },
  get: UpstreamGet,
): Promise<Refusal | undefined> {
  const at = 'as the daemon reports it';
  if (typeof c.HostConfig !== 'object' || c.HostConfig === null) return { status: 403, why: `the container has no host config ${at}` };
  const hc = checker.hostConfig(c.HostConfig, 'HostConfig.', true);
  if (hc) return { status: 403, why: `${hc} (${at})` };
  if (checker.limits.binds === true) return undefined;
  for (const [i, m] of list<GoStruct>(c.Mounts).entries()) {
    const where = `Mounts[${i}] (${at})`;
    const type = str(m.Type);
    const rw = m.RW !== false;
    if (type === 'bind') {
      const why = checker.hostPath(str(m.Source));
      if (why) return { status: 403, why: `${where}: ${why}` };
      if (rw) return { status: 403, why: `${where}: the bind of ${str(m.Source)} is read-write` };
      if (!['', 'private', 'rprivate'].includes(str(m.Propagation)))
        return { status: 403, why: `${where}: propagation ${JSON.stringify(str(m.Propagation))} reaches the host` };
    } else if (type === 'volume') {
      const name = str(m.Name);
      if (str(m.Driver) !== 'local')
        return { status: 403, why: `${where}: the volume driver ${JSON.stringify(str(m.Driver))} is not allowed` };
      const v = await get(`/volumes/${encodeURIComponent(name)}`);
      if (v.status !== 200) return unavailable(`the volume ${name}`, v.status).refuse;
      const vol = v.json as { Driver?: unknown; Options?: unknown };
      const checked = checker.volume(str(vol.Driver), vol.Options ?? null, `the volume ${JSON.stringify(name)} (${at})`);
      if (checked.why) return { status: 403, why: checked.why };
      if (checked.binds && rw)
        return { status: 403, why: `${where}: the volume ${JSON.stringify(name)} binds a host path and is mounted read-write` };
    } else if (type !== 'tmpfs') {
      return { status: 403, why: `${where}: a mount of type ${JSON.stringify(type)} is not allowed with a binds limit` };
    }
  }
  return undefined;
}

function refuse(status: 403, why: string): { refuse: Refusal } {
  return { refuse: { status, why } };
}

/** The state is unknown: refused. */
function unavailable(what: string, status: number): { refuse: Refusal } {
  return refuse(403, `${what} cannot be checked: the daemon answered ${status} to its inspect`);
}

/** The object the request names does not exist: the daemon's own answer, which forwarding would get. */
function notFound(message: string): { refuse: Refusal } {
  return { refuse: { status: 404, why: `${message} (the daemon's inspect answered 404)`, daemon: message } };
}
