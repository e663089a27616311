/**
 * The field model of the Docker profile: every field of every request body the profile
 * forwards for a rule with `docker:` limits, as the daemon decodes it, with what the
 * profile says of it (see {@link Verdict}). A key that is not here is refused.
 *
 * Derived from moby's API specification (api/swagger.yaml of Docker 20.10, API 1.41: the
 * request bodies of container create, update and exec, exec start and volume create) and
 * from what the daemon decodes beyond it: the create body is a wrapper that embeds the
 * host config at its top level (`Binds`, `Privileged`, ... without a `HostConfig` key,
 * used when `HostConfig` is absent, some of them copied into it when present) and has a
 * top-level `Cpuset`; exec create also decodes `Detach`. Fields of later API versions that
 * current clients send with zero values are `ignored` (this daemon does not decode them).
 * test/gateway/docker-model.test.ts checks this model against an extract of the spec.
 */
import { T, type GoType, type Verdict } from './gojson.js';

/** The API versions the model describes: requests outside are refused, and so is a newer daemon. */
export const API_WINDOW = { min: '1.24', max: '1.41' } as const;

type Struct = GoType & { k: 'struct' };

const as = (v: Verdict, type: GoType, why?: string): GoType => ({ ...type, v, ...(why !== undefined && { why }) });
const safe = (type: GoType): GoType => as('safe', type);
const check = (type: GoType, why: string): GoType => as('check', type, why);
const refuse = (type: GoType, why: string): GoType => as('refuse', type, why);
const ignored = (type: GoType): GoType => as('ignored', type);

const S = T.string;
const B = T.bool;
const N = T.number;
const strings = T.slice(S);
const stringMap = T.map(S);

/** Every field of a struct safe. */
const safeStruct = (fields: Record<string, GoType>): Struct => {
  const out: Record<string, GoType> = {};
  for (const [name, type] of Object.entries(fields)) out[name] = type.v ? type : safe(type);
  return T.struct(out);
};

const weightDevice = safeStruct({ Path: S, Weight: N });
const throttleDevice = safeStruct({ Path: S, Rate: N });
const deviceMapping = safeStruct({ PathOnHost: S, PathInContainer: S, CgroupPermissions: S });
const deviceRequest = safeStruct({ Driver: S, Count: N, DeviceIDs: strings, Capabilities: T.slice(strings), Options: stringMap });
const restartPolicy = safeStruct({ Name: S, MaximumRetryCount: N });

/** container.Resources: embedded in HostConfig and in UpdateConfig. */
export const RESOURCES: Record<string, GoType> = {
  CpuShares: safe(N),
  Memory: safe(N),
  NanoCpus: safe(N),
  CgroupParent: refuse(S, 'places the container in a cgroup of the host chosen by the client'),
  BlkioWeight: safe(N),
  BlkioWeightDevice: check(T.slice(T.ptr(weightDevice)), 'names host devices (devices)'),
  BlkioDeviceReadBps: check(T.slice(T.ptr(throttleDevice)), 'names host devices (devices)'),
  BlkioDeviceWriteBps: check(T.slice(T.ptr(throttleDevice)), 'names host devices (devices)'),
  BlkioDeviceReadIOps: check(T.slice(T.ptr(throttleDevice)), 'names host devices (devices)'),
  BlkioDeviceWriteIOps: check(T.slice(T.ptr(throttleDevice)), 'names host devices (devices)'),
  CpuPeriod: safe(N),
  CpuQuota: safe(N),
  CpuRealtimePeriod: safe(N),
  CpuRealtimeRuntime: safe(N),
  CpusetCpus: safe(S),
  CpusetMems: safe(S),
  Devices: check(T.slice(deviceMapping), 'host devices (devices)'),
  DeviceCgroupRules: check(strings, 'device access rules (devices)'),
  DeviceRequests: check(T.slice(deviceRequest), 'device requests (devices)'),
  KernelMemory: safe(N),
  KernelMemoryTCP: safe(N),
  MemoryReservation: safe(N),
  MemorySwap: safe(N),
  MemorySwappiness: safe(N),
  OomKillDisable: safe(B),
  PidsLimit: safe(N),
  Ulimits: safe(T.slice(T.ptr(safeStruct({ Name: S, Hard: N, Soft: N })))),
  CpuCount: safe(N),
  CpuPercent: safe(N),
  IOMaximumIOps: safe(N),
  IOMaximumBandwidth: safe(N),
};

const driverConfig = T.struct({
  Name: check(S, 'the volume driver (binds)'),
  Options: check(stringMap, 'local volume options that bind or mount a device (binds)'),
});
export const MOUNT = T.struct({
  Type: check(S, 'bind, volume and tmpfs mounts are checked, others refused'),
  Source: check(S, 'a host path or a volume (binds)'),
  Target: safe(S),
  ReadOnly: check(B, 'binds of host paths must be read-only (binds)'),
  Consistency: safe(S),
  BindOptions: safe(T.ptr(safeStruct({ Propagation: check(S, 'shared or slave propagation reaches the host (binds)'), NonRecursive: B }))),
  VolumeOptions: safe(T.ptr(safeStruct({ NoCopy: B, Labels: stringMap, DriverConfig: safe(T.ptr(driverConfig)) }))),
  TmpfsOptions: safe(T.ptr(safeStruct({ SizeBytes: N, Mode: N }))),
});

/** container.HostConfig (Resources embedded). */
export const HOST_CONFIG: Record<string, GoType> = {
  Binds: check(strings, 'host paths and volumes (binds)'),
  ContainerIDFile: safe(S),
  LogConfig: check(
    T.struct({ Type: check(S, 'log drivers that run in the daemon (json-file, local, none only)'), Config: safe(stringMap) }),
    'the log driver',
  ),
  NetworkMode: check(S, 'host and container: namespaces (hostNamespaces)'),
  PortBindings: safe(T.map(T.slice(safeStruct({ HostIp: S, HostPort: S })))),
  RestartPolicy: safe(restartPolicy),
  AutoRemove: safe(B),
  VolumeDriver: check(S, 'volume plugins (binds)'),
  VolumesFrom: check(strings, "another container's mounts (binds)"),
  CapAdd: check(T.strslice, 'capabilities (capAdd)'),
  CapDrop: safe(T.strslice),
  CgroupnsMode: check(S, 'the host cgroup namespace (hostNamespaces)'),
  Dns: safe(strings),
  DnsOptions: safe(strings),
  DnsSearch: safe(strings),
  ExtraHosts: safe(strings),
  GroupAdd: safe(strings),
  IpcMode: check(S, 'host and container: namespaces (hostNamespaces)'),
  Cgroup: check(S, "another container's cgroup (hostNamespaces)"),
  Links: safe(strings),
  OomScoreAdj: safe(N),
  PidMode: check(S, 'host and container: namespaces (hostNamespaces)'),
  Privileged: check(B, 'privileged (privileged)'),
  PublishAllPorts: safe(B),
  ReadonlyRootfs: safe(B),
  SecurityOpt: check(strings, 'only no-new-privileges and the options the rule lists (securityOpt)'),
  StorageOpt: safe(stringMap),
  Tmpfs: check(stringMap, 'tmpfs mount options that bind, move or remount (binds)'),
  UTSMode: check(S, 'host and container: namespaces (hostNamespaces)'),
  UsernsMode: check(S, 'the host user namespace (hostNamespaces)'),
  ShmSize: safe(N),
  Sysctls: safe(stringMap),
  Runtime: check(S, 'OCI runtimes other than runc'),
  ConsoleSize: safe(T.slice(N)),
  Isolation: safe(S),
  ...RESOURCES,
  Mounts: check(T.slice(MOUNT), 'bind, volume and tmpfs mounts (binds)'),
  MaskedPaths: check(strings, 'replaces the masked paths (privileged)'),
  ReadonlyPaths: check(strings, 'replaces the read-only paths (privileged)'),
  Init: safe(B),
};

/** container.Config: what runs, never where it may reach on the host. */
const CONFIG: Record<string, GoType> = {
  Hostname: S,
  Domainname: S,
  User: S,
  AttachStdin: B,
  AttachStdout: B,
  AttachStderr: B,
  ExposedPorts: T.map(T.struct({})),
  Tty: B,
  OpenStdin: B,
  StdinOnce: B,
  Env: strings,
  Cmd: T.strslice,
  Healthcheck: T.ptr(safeStruct({ Test: strings, Interval: N, Timeout: N, StartPeriod: N, Retries: N })),
  ArgsEscaped: B,
  Image: S,
  Volumes: T.map(T.struct({})),
  WorkingDir: S,
  Entrypoint: T.strslice,
  NetworkDisabled: B,
  MacAddress: S,
  OnBuild: strings,
  Labels: stringMap,
  StopSignal: S,
  StopTimeout: N,
  Shell: T.strslice,
};

const endpointSettings = T.struct({
  IPAMConfig: safe(T.ptr(safeStruct({ IPv4Address: S, IPv6Address: S, LinkLocalIPs: strings }))),
  Links: safe(strings),
  Aliases: safe(strings),
  NetworkID: safe(S),
  EndpointID: safe(S),
  Gateway: safe(S),
  IPAddress: safe(S),
  IPPrefixLen: safe(N),
  IPv6Gateway: safe(S),
  GlobalIPv6Address: safe(S),
  GlobalIPv6PrefixLen: safe(N),
  MacAddress: safe(S),
  DriverOpts: safe(stringMap),
  // Sent by current clients, decoded only by later daemons (API 1.44 and 1.48).
  DNSNames: ignored(strings),
  GwPriority: ignored(N),
});

/** The bodies the profile models, by endpoint. */
export const BODIES = {
  /** POST /containers/create: the daemon's ContainerConfigWrapper. */
  create: T.struct({
    ...Object.fromEntries(Object.entries(CONFIG).map(([k, t]) => [k, t.v ? t : safe(t)])),
    HostConfig: check(T.ptr(T.struct(HOST_CONFIG)), 'the host config'),
    Cpuset: safe(S),
    NetworkingConfig: safe(T.ptr(T.struct({ EndpointsConfig: check(T.map(T.ptr(endpointSettings)), 'network names (hostNamespaces)') }))),
    // The embedded host config: its fields at the top level, read when there is no HostConfig.
    ...HOST_CONFIG,
  }),
  /** POST /containers/{id}/update: container.UpdateConfig. */
  // The spec lists Init among Resources; the daemon's Resources has no such field (Init is HostConfig's).
  update: T.struct({ ...RESOURCES, RestartPolicy: safe(restartPolicy), Init: ignored(B) }),
  /** POST /containers/{id}/exec: types.ExecConfig. */
  exec: safeStruct({
    User: S,
    Privileged: check(B, 'privileged (privileged)'),
    Tty: B,
    AttachStdin: B,
    AttachStderr: B,
    AttachStdout: B,
    Detach: B,
    DetachKeys: S,
    Env: strings,
    WorkingDir: S,
    Cmd: strings,
  }),
  /** POST /exec/{id}/start: types.ExecStartCheck. */
  execStart: safeStruct({ Detach: B, Tty: B, ConsoleSize: ignored(T.slice(N)) }),
  /** POST /volumes/create: volume.VolumeCreateBody. */
  volumeCreate: T.struct({
    Name: safe(S),
    Driver: check(S, 'the volume driver (binds)'),
    DriverOpts: check(stringMap, 'local volume options that bind or mount a device (binds)'),
    Labels: safe(stringMap),
  }),
} as const satisfies Record<string, Struct>;

export type BodyModel = keyof typeof BODIES;
