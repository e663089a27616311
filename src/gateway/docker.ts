/**
 * The Docker Engine API profile: which requests carry a body the gateway inspects, the
 * Go types those bodies are decoded into (only the fields that matter), and the limits a
 * rule's `docker:` block puts on them. Everything here refuses what it cannot read with
 * certainty: a body is either checked field by field as the daemon will read it, or it
 * does not reach the daemon.
 */
import { realpathSync } from 'node:fs';
import { compileHostPattern } from './pattern.js';
import { decodeGo, GoSlice, parseGoJson, T, type GoStruct, type GoType } from './gojson.js';

/** The limits of a rule's `docker:` block; a limit left out refuses (the safe value). */
export interface DockerLimits {
  /** Allow `Privileged` containers and exec sessions, and security options that remove confinement. @default false */
  privileged: boolean;
  /** Allow host namespaces (`host`) and joining another container's (`container:<id>`). @default false */
  hostNamespaces: boolean;
  /** Capabilities that may be added (`CapAdd`), or true for any (`ALL` included). @default [] */
  capAdd: readonly string[] | true;
  /** Allow devices (`Devices`, `DeviceRequests`, `DeviceCgroupRules`). @default false */
  devices: boolean;
  /** Host path patterns bind mounts may use, or true for any. @default [] (no host paths) */
  binds: readonly string[] | true;
}

/** The inspected endpoints. */
export type DockerEndpoint = 'create' | 'update' | 'exec' | 'volume';

/**
 * The inspected endpoint a request goes to, from the path without its version prefix.
 * Literal segments are compared without regard to case, like the rules' patterns.
 */
export function dockerEndpoint(method: string, segments: readonly string[]): DockerEndpoint | undefined {
  if (method !== 'POST' || segments.length < 2) return undefined;
  const first = segments[0]!.toLowerCase();
  const last = segments[segments.length - 1]!.toLowerCase();
  if (segments.length === 2 && last === 'create') {
    if (first === 'containers') return 'create';
    if (first === 'volumes') return 'volume';
  }
  // Container routes capture the name with `{name:.*}`: any number of segments between.
  if (first === 'containers' && segments.length >= 3) {
    if (last === 'update') return 'update';
    if (last === 'exec') return 'exec';
  }
  return undefined;
}

const S = T.string;
const driver = T.struct({ Name: S, Options: T.map(S) });
const mount = T.struct({
  Type: S,
  Source: S,
  VolumeOptions: T.ptr(T.struct({ DriverConfig: T.ptr(driver) })),
});
/** The fields of container.Resources that concern devices (embedded in HostConfig and UpdateConfig). */
const resources = {
  Devices: T.slice(T.struct({})),
  DeviceRequests: T.slice(T.struct({})),
  DeviceCgroupRules: T.slice(S),
};
const hostConfig = T.struct({
  Binds: T.slice(S),
  NetworkMode: S,
  PidMode: S,
  IpcMode: S,
  UTSMode: S,
  UsernsMode: S,
  CgroupnsMode: S,
  Cgroup: S,
  Privileged: T.bool,
  // A list of strings now; older API versions also took one string.
  CapAdd: T.strslice,
  VolumesFrom: T.slice(S),
  VolumeDriver: S,
  Mounts: T.slice(mount),
  SecurityOpt: T.slice(S),
  MaskedPaths: T.slice(S),
  ReadonlyPaths: T.slice(S),
  ...resources,
});
const TYPES: Record<DockerEndpoint, GoType & { k: 'struct' }> = {
  create: T.struct({ HostConfig: T.ptr(hostConfig) }),
  update: T.struct(resources),
  exec: T.struct({ Privileged: T.bool, User: S }),
  volume: T.struct({ Driver: S, DriverOpts: T.map(S) }),
};

/** Checks limits on bodies; built once per rule. */
export class DockerChecker {
  readonly #limits: DockerLimits;
  readonly #binds: Array<(path: string) => boolean> | true;
  readonly #caps: Set<string> | true;

  constructor(limits: DockerLimits) {
    this.#limits = limits;
    this.#binds = limits.binds === true ? true : limits.binds.map(compileHostPattern);
    this.#caps = limits.capAdd === true ? true : new Set(limits.capAdd.map(normalizeCap));
  }

  /**
   * Decodes and checks a body. Returns undefined when it passes, or why not. Throws
   * GoJsonError for a body that is not JSON as the daemon reads it.
   */
  check(endpoint: DockerEndpoint, body: Uint8Array): string | undefined {
    if (body.length === 0) return undefined; // the daemon reads no fields from an empty body
    const value = decodeGo(parseGoJson(body), TYPES[endpoint]);
    switch (endpoint) {
      case 'create': {
        const hc = value.HostConfig as GoStruct | null | undefined;
        return hc ? this.#hostConfig(hc) : undefined;
      }
      case 'update':
        return this.#devices(value, '');
      case 'exec':
        return !this.#limits.privileged && value.Privileged === true ? 'a privileged exec session is not allowed' : undefined;
      case 'volume':
        return this.#volume(str(value.Driver), value.DriverOpts as Map<string, string> | null | undefined, 'the volume');
    }
  }

  #hostConfig(hc: GoStruct): string | undefined {
    const l = this.#limits;
    if (!l.privileged) {
      if (hc.Privileged === true) return 'HostConfig.Privileged is not allowed';
      for (const opt of list<string>(hc.SecurityOpt)) {
        if (unconfined(opt)) return `HostConfig.SecurityOpt "${opt}" removes confinement and is not allowed`;
      }
      if (hc.MaskedPaths instanceof GoSlice) return 'HostConfig.MaskedPaths replaces the masked paths and is not allowed';
      if (hc.ReadonlyPaths instanceof GoSlice) return 'HostConfig.ReadonlyPaths replaces the read-only paths and is not allowed';
    }
    if (!l.hostNamespaces) {
      for (const field of NAMESPACE_FIELDS) {
        const mode = str(hc[field]).toLowerCase();
        if (mode === 'host') return `HostConfig.${field} "host" shares a host namespace and is not allowed`;
        if (mode.startsWith('container:'))
          return `HostConfig.${field} "${str(hc[field])}" joins another container's namespace and is not allowed`;
      }
    }
    if (this.#caps !== true) {
      const caps = (hc.CapAdd as string[] | null | undefined) ?? [];
      for (const cap of caps) {
        if (!this.#caps.has(normalizeCap(cap))) return `HostConfig.CapAdd "${cap}" is not an allowed capability`;
      }
    }
    const devices = this.#devices(hc, 'HostConfig.');
    if (devices) return devices;
    if (this.#binds !== true) return this.#mounts(hc);
    return undefined;
  }

  #devices(value: GoStruct, prefix: string): string | undefined {
    if (this.#limits.devices) return undefined;
    for (const field of ['Devices', 'DeviceRequests', 'DeviceCgroupRules']) {
      if (list(value[field]).length > 0) return `${prefix}${field} is not allowed`;
    }
    return undefined;
  }

  #mounts(hc: GoStruct): string | undefined {
    for (const bind of list<string>(hc.Binds)) {
      const parts = bind.split(':');
      // `name:/dst` is a named volume (checked where volumes are created); `/src:/dst` a host path.
      if (parts.length >= 2 && parts[0]!.startsWith('/')) {
        const why = this.#hostPath(parts[0]!);
        if (why) return `HostConfig.Binds "${bind}": ${why}`;
      }
    }
    for (const [i, m] of list<GoStruct>(hc.Mounts).entries()) {
      const type = str(m.Type);
      const at = `HostConfig.Mounts[${i}]`;
      if (type === 'bind') {
        const why = this.#hostPath(str(m.Source));
        if (why) return `${at} (bind ${JSON.stringify(str(m.Source))}): ${why}`;
      } else if (type === 'volume') {
        const config = (m.VolumeOptions as GoStruct | null | undefined)?.DriverConfig as GoStruct | null | undefined;
        if (config) {
          const why = this.#volume(str(config.Name), config.Options as Map<string, string> | null | undefined, at);
          if (why) return why;
        }
      } else if (type !== 'tmpfs' && type !== 'image') {
        return `${at} of type ${JSON.stringify(type)} is not allowed with a binds limit`;
      }
    }
    if (list(hc.VolumesFrom).length > 0) return "HostConfig.VolumesFrom mounts another container's volumes and binds, and is not allowed";
    const vd = str(hc.VolumeDriver);
    if (vd !== '' && vd !== 'local') return `HostConfig.VolumeDriver "${vd}" is a plugin whose mounts cannot be checked`;
    return undefined;
  }

  /** A volume's driver options: the local driver's `o=bind` (or type none) binds `device` from the host. */
  #volume(driverName: string, options: Map<string, string> | null | undefined, at: string): string | undefined {
    if (this.#binds === true) return undefined;
    if (driverName !== '' && driverName !== 'local') {
      return `${at}: the volume driver "${driverName}" is a plugin whose mounts cannot be checked`;
    }
    if (!options || options.size === 0) return undefined;
    const device = options.get('device');
    if (device === undefined) return undefined;
    const type = options.get('type') ?? '';
    if (type === 'tmpfs') return undefined;
    const o = (options.get('o') ?? '').split(',');
    if (type === 'none' || o.includes('bind') || o.includes('rbind')) {
      const why = this.#hostPath(device);
      return why ? `${at}: the local volume binds host path ${JSON.stringify(device)}: ${why}` : undefined;
    }
    return `${at}: the local volume mounts device ${JSON.stringify(device)} (type ${JSON.stringify(type)}), which is not allowed with a binds limit`;
  }

  #hostPath(raw: string): string | undefined {
    const patterns = this.#binds as Array<(path: string) => boolean>;
    if (!raw.startsWith('/')) return 'a bind source must be an absolute host path';
    const path = cleanHostPath(raw);
    if (!patterns.some((test) => test(path))) return `${path} is outside the allowed host paths`;
    // A symlink inside an allowed directory could point anywhere: the daemon follows it.
    let real: string | undefined;
    try {
      real = realpathSync.native(path);
    } catch {
      real = undefined; // does not exist (yet): the daemon creates a directory there
    }
    if (real !== undefined && real !== path && !patterns.some((test) => test(real!))) {
      return `${path} resolves to ${real}, which is outside the allowed host paths`;
    }
    return undefined;
  }
}

const NAMESPACE_FIELDS = ['NetworkMode', 'PidMode', 'IpcMode', 'UTSMode', 'UsernsMode', 'CgroupnsMode', 'Cgroup'] as const;

/** Security options that switch confinement off (`seccomp=unconfined`, `label=disable`, ...). */
function unconfined(opt: string): boolean {
  const m = /^([^=:]+)[=:](.*)$/s.exec(opt.trim());
  if (!m) return false;
  const key = m[1]!.trim().toLowerCase();
  const value = m[2]!.trim().toLowerCase();
  if (key === 'label') return value === 'disable';
  return (key === 'seccomp' || key === 'apparmor' || key === 'systempaths') && value === 'unconfined';
}

/** `cap_sys_admin`, `SYS_ADMIN`: the daemon lower-cases (Go's simple mapping) and adds `cap_`. */
export function normalizeCap(cap: string): string {
  let lower = '';
  for (const ch of cap) lower += ch === '\u0130' ? 'i' : ch.toLowerCase();
  if (lower === 'all') return 'all';
  return lower.startsWith('cap_') ? lower : `cap_${lower}`;
}

/** A host path as the kernel resolves it lexically: `..`, `.`, `//` and a trailing slash cleaned. */
export function cleanHostPath(path: string): string {
  const out: string[] = [];
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return '/' + out.join('/');
}

function list<E = unknown>(value: unknown): E[] {
  return value instanceof GoSlice ? (value.items as E[]) : [];
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}
