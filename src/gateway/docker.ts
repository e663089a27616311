/**
 * The Docker Engine API profile, for a rule with `docker:` limits: a request is forwarded
 * only when the profile models its endpoint and every field of its body (docker-model.ts,
 * docker-endpoints.ts), for an API version it models, and each field is safe, within the
 * rule's limits, or absent. Before a container starts (or is attached to, or an exec in it
 * starts) the configuration the daemon will use is asked of the daemon and checked again
 * (docker-effective.ts). Everything here refuses what it cannot read with certainty.
 */
import { lstatSync, realpathSync } from 'node:fs';
import { compileHostPattern } from './pattern.js';
import { decodeGo, GoJsonError, GoSlice, parseGoJson, type GoStruct, type GoType } from './gojson.js';
import { BODIES, type BodyModel } from './docker-model.js';

/** The limits of a rule's `docker:` block; a limit left out refuses (the safe value). */
export interface DockerLimits {
  /** Allow `Privileged` containers and exec sessions, and security options that remove confinement. @default false */
  privileged: boolean;
  /** Allow host namespaces (`host`) and joining another container's (`container:<id>`). @default false */
  hostNamespaces: boolean;
  /** Capabilities that may be added (`CapAdd`), or true for any (`ALL` included). @default [] */
  capAdd: readonly string[] | true;
  /** Allow devices (`Devices`, `DeviceRequests`, `DeviceCgroupRules`, block I/O device limits). @default false */
  devices: boolean;
  /**
   * Host path patterns bind mounts may use, or true for any. With a list, every bind of a
   * host path (and every local volume that binds one) must be read-only. @default [] (no host paths)
   */
  binds: readonly string[] | true;
  /** `SecurityOpt` entries allowed besides `no-new-privileges` (exact strings). @default [] */
  securityOpt: readonly string[];
  /**
   * Scope the rule's peers to what they own: objects they create get the owner label, and
   * requests, listings and events reach only objects with their owner label (docker-owner.ts). @default false
   */
  owner?: boolean;
}

/** A refusal: the status the gateway answers and why. */
export interface Refusal {
  status: 400 | 403 | 404 | 502;
  why: string;
  /** The daemon's own answer to the request (its 404 for an object that does not exist): the message sent as it is. */
  daemon?: string;
}

/** The `check` fields of the model that {@link DockerChecker} reads (test/gateway/docker-model.test.ts compares). */
export const CHECKED_FIELDS = new Set([
  'Binds',
  'LogConfig',
  'LogConfig.Type',
  'NetworkMode',
  'VolumeDriver',
  'VolumesFrom',
  'CapAdd',
  'CgroupnsMode',
  'IpcMode',
  'Cgroup',
  'PidMode',
  'Privileged',
  'SecurityOpt',
  'UTSMode',
  'UsernsMode',
  'Runtime',
  'Tmpfs',
  'Mounts',
  'Mounts.Type',
  'Mounts.Source',
  'Mounts.ReadOnly',
  'Mounts.BindOptions.Propagation',
  'Mounts.VolumeOptions.DriverConfig.Name',
  'Mounts.VolumeOptions.DriverConfig.Options',
  'MaskedPaths',
  'ReadonlyPaths',
  'BlkioWeightDevice',
  'BlkioDeviceReadBps',
  'BlkioDeviceWriteBps',
  'BlkioDeviceReadIOps',
  'BlkioDeviceWriteIOps',
  'Devices',
  'DeviceCgroupRules',
  'DeviceRequests',
  'HostConfig',
  'NetworkingConfig.EndpointsConfig',
  'Driver',
  'DriverOpts',
]);

const NAMESPACE_FIELDS = ['NetworkMode', 'PidMode', 'IpcMode', 'UTSMode', 'UsernsMode', 'Cgroup', 'CgroupnsMode'] as const;
const DEVICE_FIELDS = [
  'Devices',
  'DeviceRequests',
  'DeviceCgroupRules',
  'BlkioWeightDevice',
  'BlkioDeviceReadBps',
  'BlkioDeviceWriteBps',
  'BlkioDeviceReadIOps',
  'BlkioDeviceWriteIOps',
] as const;
const LOG_DRIVERS = new Set(['', 'json-file', 'local', 'none']);
/** The masked and read-only paths dockerd (20.10) gives an unprivileged container. */
const DEFAULT_MASKED = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
];
const DEFAULT_READONLY = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];
const RUNTIMES = new Set(['', 'runc', 'io.containerd.runc.v2']);
const PROPAGATION_OK = new Set(['', 'private', 'rprivate']);

/** Checks bodies and effective configurations against a rule's limits; built once per rule. */
export class DockerChecker {
  readonly limits: DockerLimits;
  readonly #binds: Array<{ test: (path: string) => boolean; root: string }> | true;
  readonly #caps: Set<string> | true;

  constructor(limits: DockerLimits) {
    this.limits = limits;
    this.#binds = limits.binds === true ? true : limits.binds.map((p) => ({ test: compileHostPattern(p), root: patternRoot(p) }));
    this.#caps = limits.capAdd === true ? true : new Set(limits.capAdd.map(normalizeCap));
  }

  /**
   * Decodes a body with its model and checks it. Returns undefined when it passes, or the
   * refusal: 400 for a body the daemon would not read as we do, 403 naming the field otherwise.
   */
  checkBody(model: BodyModel, body: Uint8Array): Refusal | undefined {
    if (body.length === 0) return undefined; // the daemon reads no fields from an empty body
    let value: GoStruct;
    try {
      value = decodeGo(parseGoJson(body), BODIES[model], { strict: true });
    } catch (e) {
      if (!(e instanceof GoJsonError)) throw e;
      return { status: e.kind === 'unknown' ? 403 : 400, why: `the ${model} body is refused: ${e.message}` };
    }
    const why = refusedField(value, BODIES[model], '') ?? this.#body(model, value);
    return why === undefined ? undefined : { status: 403, why };
  }

  #body(model: BodyModel, value: GoStruct): string | undefined {
    switch (model) {
      case 'create': {
        const hc = value.HostConfig as GoStruct | null | undefined;
        // Both are checked: dockerd reads the top level when HostConfig is absent, and copies
        // some top-level fields (VolumeDriver, ...) into HostConfig when it is present.
        const inner = hc ? this.hostConfig(hc, 'HostConfig.', false) : undefined;
        if (inner) return inner;
        const top = this.hostConfig(value, '', false);
        if (top) return top;
        if (!this.limits.hostNamespaces) {
          const ep = (value.NetworkingConfig as GoStruct | null | undefined)?.EndpointsConfig;
          for (const [name] of entries(ep)) {
            if (hostMode(name)) return `NetworkingConfig.EndpointsConfig "${name}" is a host or container namespace`;
          }
        }
        return undefined;
      }
      case 'update':
        return this.#devices(value, '');
      case 'exec':
        return !this.limits.privileged && value.Privileged === true ? 'a privileged exec session is not allowed' : undefined;
      case 'execStart':
        return undefined;
      case 'volumeCreate':
        return this.volume(str(value.Driver), value.DriverOpts, 'the volume').why;
    }
  }

  /**
   * A host config: from a body (`effective` false) or from the daemon's inspect of a
   * container (true: the daemon's defaults for the cgroup namespace and the log driver are
   * the administrator's and not judged there; the masked and read-only paths must hold the
   * daemon's defaults).
   */
  hostConfig(hc: GoStruct, prefix: string, effective: boolean): string | undefined {
    const l = this.limits;
    if (!l.privileged) {
      if (hc.Privileged === true) return `${prefix}Privileged is not allowed`;
      if (!effective) {
        if (list(hc.MaskedPaths).length > 0 || hc.MaskedPaths instanceof GoSlice)
          return `${prefix}MaskedPaths replaces the masked paths and is not allowed`;
        if (list(hc.ReadonlyPaths).length > 0 || hc.ReadonlyPaths instanceof GoSlice)
          return `${prefix}ReadonlyPaths replaces the read-only paths and is not allowed`;
      } else {
        // The daemon fills in its defaults at create: each must still be there.
        const masked = new Set(list<string>(hc.MaskedPaths));
        const missing = DEFAULT_MASKED.find((p) => !masked.has(p));
        if (missing) return `${prefix}MaskedPaths leaves ${missing} unmasked`;
        const readOnly = new Set(list<string>(hc.ReadonlyPaths));
        const writable = DEFAULT_READONLY.find((p) => !readOnly.has(p));
        if (writable) return `${prefix}ReadonlyPaths leaves ${writable} writable`;
      }
    }
    for (const opt of list<string>(hc.SecurityOpt)) {
      if (typeof opt !== 'string' || !(noNewPrivileges(opt) || l.securityOpt.includes(opt)))
        return `${prefix}SecurityOpt ${JSON.stringify(opt)} is not allowed (only no-new-privileges and the rule's securityOpt)`;
    }
    if (!l.hostNamespaces) {
      for (const field of NAMESPACE_FIELDS) {
        if (effective && field === 'CgroupnsMode') continue;
        const mode = str(hc[field]);
        if (hostMode(mode)) return `${prefix}${field} ${JSON.stringify(mode)} shares a namespace of the host or another container`;
      }
    }
    if (this.#caps !== true) {
      for (const cap of list<string>(hc.CapAdd)) {
        if (!this.#caps.has(normalizeCap(String(cap)))) return `${prefix}CapAdd ${JSON.stringify(cap)} is not an allowed capability`;
      }
    }
    const devices = this.#devices(hc, prefix);
    if (devices) return devices;
    if (!effective) {
      const log = str((hc.LogConfig as GoStruct | null | undefined)?.Type);
      if (!LOG_DRIVERS.has(log)) return `${prefix}LogConfig.Type ${JSON.stringify(log)} is a log driver that runs in the daemon`;
    }
    const runtime = str(hc.Runtime);
    if (!RUNTIMES.has(runtime)) return `${prefix}Runtime ${JSON.stringify(runtime)} is not allowed`;
    if (effective && str(hc.CgroupParent) !== '') return `${prefix}CgroupParent is not allowed`;
    if (this.#binds !== true) return this.#mounts(hc, prefix);
    return undefined;
  }

  #devices(value: GoStruct, prefix: string): string | undefined {
    if (this.limits.devices) return undefined;
    for (const field of DEVICE_FIELDS) {
      if (list(value[field]).length > 0) return `${prefix}${field} is not allowed`;
    }
    return undefined;
  }

  #mounts(hc: GoStruct, prefix: string): string | undefined {
    for (const bind of list<string>(hc.Binds)) {
      const why = this.bindSpec(String(bind));
      if (why) return `${prefix}Binds ${JSON.stringify(bind)}: ${why}`;
    }
    for (const [i, m] of list<GoStruct>(hc.Mounts).entries()) {
      const at = `${prefix}Mounts[${i}]`;
      const type = str(m.Type);
      const readOnly = m.ReadOnly === true;
      if (type === 'bind') {
        const why = this.hostPath(str(m.Source));
        if (why) return `${at} (bind ${JSON.stringify(str(m.Source))}): ${why}`;
        if (!readOnly) return `${at}: a bind of a host path must be read-only`;
        const propagation = str((m.BindOptions as GoStruct | null | undefined)?.Propagation);
        if (!PROPAGATION_OK.has(propagation)) return `${at}: propagation ${JSON.stringify(propagation)} reaches the host`;
      } else if (type === 'volume') {
        const config = (m.VolumeOptions as GoStruct | null | undefined)?.DriverConfig as GoStruct | null | undefined;
        if (config) {
          const v = this.volume(str(config.Name), config.Options, at);
          if (v.why) return v.why;
          if (v.binds && !readOnly) return `${at}: a volume that binds a host path must be mounted read-only`;
        }
      } else if (type !== 'tmpfs') {
        return `${at} of type ${JSON.stringify(type)} is not allowed with a binds limit`;
      }
    }
    for (const [target, options] of entries(hc.Tmpfs)) {
      // The options reach the OCI runtime as mount flags: with bind the kernel ignores the type.
      const flags = String(options)
        .split(',')
        .map((f) => f.trim().toLowerCase());
      if (flags.some((f) => ['bind', 'rbind', 'move', 'remount'].includes(f) || /^r?(shared|slave)$/.test(f)))
        return `${prefix}Tmpfs ${JSON.stringify(target)}: the options ${JSON.stringify(options)} are not a tmpfs mount`;
    }
    if (list(hc.VolumesFrom).length > 0) return `${prefix}VolumesFrom mounts another container's volumes and binds, and is not allowed`;
    const vd = str(hc.VolumeDriver);
    if (vd !== '' && vd !== 'local') return `${prefix}VolumeDriver "${vd}" is a plugin whose mounts cannot be checked`;
    return undefined;
  }

  /** One `Binds` entry, split as the daemon's Linux parser splits it. */
  bindSpec(spec: string): string | undefined {
    const parts = spec.split(':');
    if (parts.length === 1) return undefined; // an anonymous volume at that path
    if (parts.length > 3) return 'not a bind the profile can read (too many colons)';
    const [source, , mode = ''] = parts as [string, string, string?];
    const options = mode.split(',');
    if (options.includes('z') || options.includes('Z')) return 'relabelling (z, Z) is a label change and is not allowed';
    if (options.some((o) => /^r?(shared|slave)$/.test(o))) return 'shared or slave propagation reaches the host';
    if (!source.startsWith('/')) return undefined; // a named volume: its options are checked before the container starts
    const why = this.hostPath(source);
    if (why) return why;
    if (!options.includes('ro')) return 'a bind of a host path must be read-only (:ro)';
    return undefined;
  }

  /**
   * A volume's driver and options: the local driver with `o` holding `bind` or `rbind`
   * binds `device` from the host (whatever `type` says); with another `type`, `device` is
   * mounted (refused) unless it is tmpfs, which mounts no device.
   */
  volume(driverName: string, options: unknown, at: string): { why?: string; binds: boolean } {
    if (this.#binds === true) return { binds: false };
    if (driverName !== '' && driverName !== 'local') {
      return { why: `${at}: the volume driver "${driverName}" is a plugin whose mounts cannot be checked`, binds: false };
    }
    const opts = new Map<string, string>();
    for (const [k, value] of entries(options)) {
      if (!['type', 'o', 'device'].includes(k))
        return { why: `${at}: the local volume option ${JSON.stringify(k)} is not modelled`, binds: false };
      opts.set(k, String(value));
    }
    if (opts.size === 0) return { binds: false };
    const flags = (opts.get('o') ?? '').split(',').map((f) => f.trim().toLowerCase());
    const device = opts.get('device') ?? '';
    if (flags.includes('bind') || flags.includes('rbind')) {
      const why = this.hostPath(device);
      return why ? { why: `${at}: the local volume binds host path ${JSON.stringify(device)}: ${why}`, binds: true } : { binds: true };
    }
    if (flags.some((f) => f === 'remount' || f === 'move'))
      return { why: `${at}: the local volume option o=${opts.get('o')} is not allowed`, binds: false };
    const type = (opts.get('type') ?? '').trim().toLowerCase();
    if (type === 'tmpfs') return { binds: false };
    return {
      why: `${at}: the local volume mounts ${JSON.stringify(device)} (type ${JSON.stringify(opts.get('type') ?? '')}), which is not allowed with a binds limit`,
      binds: false,
    };
  }

  /**
   * A host path a bind may use: inside an allowed pattern, with no symbolic link in any
   * component below the pattern's literal root, and resolving inside an allowed pattern.
   * (A path that does not exist yet is created by the daemon below its longest existing part.)
   */
  hostPath(raw: string): string | undefined {
    if (this.#binds === true) return undefined;
    if (!raw.startsWith('/')) return 'a bind source must be an absolute host path';
    const path = cleanHostPath(raw);
    const patterns = this.#binds;
    const matched = patterns.filter((p) => p.test(path));
    if (matched.length === 0) return `${path} is outside the allowed host paths`;
    // The shortest root that this path is under decides where symlinks are looked for.
    const root = matched.map((p) => p.root).sort((a, b) => a.length - b.length)[0]!;
    const below = path.slice(root.length).split('/').filter(Boolean);
    let at = root === '/' ? '' : root;
    for (const seg of below) {
      at += '/' + seg;
      let link: boolean;
      try {
        link = lstatSync(at).isSymbolicLink();
      } catch {
        break; // does not exist (yet)
      }
      if (link) return `${at} is a symbolic link, which the daemon would follow`;
    }
    let real: string | undefined;
    try {
      real = realpathSync.native(path);
    } catch {
      real = undefined;
    }
    if (real !== undefined && real !== path && !patterns.some((p) => p.test(real!))) {
      return `${path} resolves to ${real}, which is outside the allowed host paths`;
    }
    return undefined;
  }
}

/** `no-new-privileges`, with `:` or `=` and a value Go's strconv.ParseBool reads. */
function noNewPrivileges(opt: string): boolean {
  if (opt === 'no-new-privileges') return true;
  const m = /^no-new-privileges[=:](.*)$/s.exec(opt);
  return m !== null && ['1', 't', 'T', 'TRUE', 'true', 'True', '0', 'f', 'F', 'FALSE', 'false', 'False'].includes(m[1]!);
}

function hostMode(mode: string): boolean {
  const m = mode.toLowerCase();
  return m === 'host' || m.startsWith('container:');
}

/** The literal directory a path pattern starts with: `/srv/ci/**` is under `/srv/ci`. */
function patternRoot(pattern: string): string {
  const out: string[] = [];
  for (const seg of pattern.split('/').filter(Boolean)) {
    if (seg === '*' || seg === '**') break;
    out.push(seg);
  }
  return '/' + out.join('/');
}

/** A field whose model says `refuse` holding a value other than its zero value, as a reason. */
function refusedField(value: unknown, type: GoType, at: string): string | undefined {
  if (value === null || value === undefined) return undefined;
  switch (type.k) {
    case 'ptr':
      return refusedField(value, type.to, at);
    case 'struct': {
      const s = value as GoStruct;
      for (const [name, field] of Object.entries(type.fields)) {
        if (!(name in s)) continue;
        const where = at ? `${at}.${name}` : name;
        if (field.v === 'refuse' && !isZero(s[name])) return `${where} ${field.why ?? 'is not allowed'}, and is not allowed`;
        const inner = refusedField(s[name], field, where);
        if (inner) return inner;
      }
      return undefined;
    }
    case 'slice':
      for (const [i, item] of list(value).entries()) {
        const inner = refusedField(item, type.of, `${at}[${i}]`);
        if (inner) return inner;
      }
      return undefined;
    case 'map':
      for (const [k, item] of entries(value)) {
        const inner = refusedField(item, type.of, `${at}[${JSON.stringify(k)}]`);
        if (inner) return inner;
      }
      return undefined;
    default:
      return undefined;
  }
}

function isZero(value: unknown): boolean {
  if (value === null || value === undefined || value === '' || value === false || value === 0) return true;
  if (value instanceof GoSlice) return value.items.length === 0;
  if (Array.isArray(value)) return value.length === 0;
  if (value instanceof Map) return value.size === 0;
  if (typeof value === 'object') return Object.values(value).every(isZero);
  return false;
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

/** A list from a decoded body (GoSlice, or a StrSlice's array) or from the daemon's JSON. */
export function list<E = unknown>(value: unknown): E[] {
  if (value instanceof GoSlice) return value.items as E[];
  return Array.isArray(value) ? (value as E[]) : [];
}

/** A map's entries, from a decoded body (Map) or from the daemon's JSON (an object). */
export function entries(value: unknown): Array<[string, unknown]> {
  if (value instanceof Map) return [...(value as Map<string, unknown>).entries()];
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof GoSlice)) return Object.entries(value);
  return [];
}

export function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}
