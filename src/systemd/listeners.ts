/**
 * Socket activation: the listening sockets systemd (or systemd-socket-activate) passed to
 * this process as fds 3, 4, ... with LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES and, on newer
 * systemd, LISTEN_PIDFDID. The variables are read once and removed, and every passed fd is
 * marked close-on-exec, so that children of the process do not take the sockets for theirs.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import { notUnixStreamListener, ownPidfdId, setCloseOnExec } from '../native/index.js';
import { localAddress } from '../native/index.js';
import { holdListenerFile } from '../identity/index.js';
import { listen, type ListenOptions } from '../net/index.js';
import * as v from '../validate.js';

/** The first fd systemd passes (SD_LISTEN_FDS_START). */
const FIRST_FD = 3;
/** The name systemd gives an fd whose socket unit set no FileDescriptorName=. */
const UNNAMED = 'unknown';

/** One socket systemd passed: its fd and its `FileDescriptorName=` (`unknown` where none was set). */
export interface ActivatedSocket {
  fd: number;
  name: string;
}

let passed: readonly ActivatedSocket[] | undefined;

function activationError(message: string): SecpolicyError {
  return new SecpolicyError(ErrorCode.SOCKET_ACTIVATION, message);
}

function decimal(name: string, value: string): number {
  if (!/^[0-9]{1,9}$/.test(value)) throw activationError(`${name}=${JSON.stringify(value)} is not a decimal number`);
  return Number(value);
}

/** Reads and removes the activation variables; [] when they are absent or meant for another process. */
function readEnvironment(): ActivatedSocket[] {
  const env = process.env;
  const { LISTEN_PID: pid, LISTEN_FDS: fds, LISTEN_FDNAMES: names, LISTEN_PIDFDID: pidfdId } = env;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  delete env.LISTEN_PIDFDID;
  if (fds === undefined || pid === undefined) return [];
  // Variables inherited from a parent that was activated are not ours (sd_listen_fds does the same).
  if (decimal('LISTEN_PID', pid) !== process.pid) return [];
  if (pidfdId !== undefined) {
    const expected = /^[0-9]{1,20}$/.test(pidfdId) ? BigInt(pidfdId) : undefined;
    if (expected === undefined) throw activationError(`LISTEN_PIDFDID=${JSON.stringify(pidfdId)} is not a decimal number`);
    const own = ownPidfdId();
    // A recycled pid has a new pidfd identity: the fds were meant for the process that had our pid before.
    if (own !== undefined && own !== expected) return [];
  }
  const count = decimal('LISTEN_FDS', fds);
  const labels = names === undefined ? [] : names.split(':');
  if (names !== undefined && labels.length !== count) {
    throw activationError(`LISTEN_FDNAMES names ${labels.length} fds but LISTEN_FDS says ${count}`);
  }
  const sockets: ActivatedSocket[] = [];
  for (let i = 0; i < count; i++) {
    const fd = FIRST_FD + i;
    setCloseOnExec(fd);
    sockets.push({ fd, name: labels[i] || UNNAMED });
  }
  return sockets;
}

/**
 * The sockets systemd passed to this process, in fd order. The environment is read on the
 * first call and the variables removed; later calls return the same list. Empty when the
 * process was not socket-activated (or the variables name another process).
 */
export function systemdSockets(): readonly ActivatedSocket[] {
  passed ??= Object.freeze(readEnvironment().map((s) => Object.freeze(s)));
  return passed;
}

/** Throws ERR_SECPOLICY_SOCKET_ACTIVATION unless the passed fd is a listening UNIX stream socket. */
function checkListener(socket: ActivatedSocket): void {
  const why = notUnixStreamListener(socket.fd);
  if (why !== undefined) throw activationError(`the socket systemd passed as ${JSON.stringify(socket.name)} is unusable: ${why}`);
}

/**
 * The one socket `spec` names: `systemd` (the only socket passed) or `systemd:NAME` (the
 * socket whose `FileDescriptorName=` is NAME). Throws ERR_SECPOLICY_SOCKET_ACTIVATION when
 * there is no such socket, when the choice is ambiguous, or when it is not a listening UNIX
 * stream socket.
 */
export function systemdSocket(spec: string): ActivatedSocket {
  if (!isSystemdSpec(spec)) throw invalidArg('spec', '"systemd" or "systemd:NAME"', spec);
  const sockets = systemdSockets();
  const name = spec.startsWith('systemd:') ? spec.slice('systemd:'.length) : undefined;
  const matching = name === undefined ? sockets : sockets.filter((s) => s.name === name);
  if (sockets.length === 0) throw activationError('no sockets were passed by systemd (LISTEN_FDS is not set for this process)');
  if (matching.length === 0) {
    throw activationError(`systemd passed no socket named ${JSON.stringify(name)} (names: ${sockets.map((s) => s.name).join(', ')})`);
  }
  if (matching.length > 1) {
    throw activationError(
      name === undefined
        ? `systemd passed ${sockets.length} sockets; choose one with systemd:NAME (names: ${sockets.map((s) => s.name).join(', ')})`
        : `systemd passed ${matching.length} sockets named ${JSON.stringify(name)}; give each a distinct FileDescriptorName=`,
    );
  }
  checkListener(matching[0]!);
  return matching[0]!;
}

/** True for the `--listen` values that name an activated socket: `systemd` and `systemd:NAME`. */
export function isSystemdSpec(value: unknown): value is string {
  return typeof value === 'string' && (value === 'systemd' || /^systemd:[^:\0]+$/.test(value));
}

/** Options of {@link systemdListeners}. */
export interface SystemdListenersOptions {
  /**
   * Makes the server for the socket with this name (for example a `createServer()` with a
   * policy, or an `http.createServer()` to `guard()`); it must not be listening yet.
   * @default a plain `net.createServer()`
   */
  server?: (name: string) => net.Server;
}

/**
 * A server listening on each socket systemd passed, keyed by the socket's name (`unknown`
 * where systemd gave none; a repeated name gets `#2`, `#3`, ... in fd order). Every passed
 * fd must be a listening UNIX stream socket, else ERR_SECPOLICY_SOCKET_ACTIVATION and no
 * server is made. Servers made by `createServer()` verify their peers as they do on a
 * socket from `listen()`; the perms rule reads the mode of the activated socket's file,
 * held open from here on (not whatever its path names later).
 */
export function systemdListeners(options?: SystemdListenersOptions): Map<string, net.Server> {
  const o = v.options<SystemdListenersOptions>('options', options ?? {});
  const make = o.server === undefined ? () => net.createServer() : v.func<(name: string) => net.Server>('options.server', o.server);
  const sockets = systemdSockets();
  for (const s of sockets) checkListener(s);
  const servers = new Map<string, net.Server>();
  for (const s of sockets) {
    let key = s.name;
    for (let n = 2; servers.has(key); n++) key = `${s.name}#${n}`;
    servers.set(key, listenOnFd(make(s.name), s.fd));
  }
  return servers;
}

/**
 * Makes `server` listen on an inherited listening fd (an activated socket); the socket
 * file, if any, belongs to whoever made it and is not removed when the server closes.
 */
export function listenOnFd<S extends net.Server>(server: S, fd: number): S {
  if (typeof server !== 'object' || server === null || typeof server.listen !== 'function') {
    throw invalidArg('server', 'a net.Server', server);
  }
  if (server.listening) throw invalidArg('server', 'a server that is not listening yet', server);
  server.listen({ fd });
  holdActivatedFile(server, fd);
  return server;
}

/**
 * Holds the file an inherited listener is bound to (its path from getsockname), so that
 * the perms rule reads that file for the server's life, not what the path names later.
 * Nothing to hold for an abstract or unbound socket; a hold that fails is tried again on
 * the first read, and the mode is unknown unless that proves the file.
 */
function holdActivatedFile(server: net.Server, fd: number): void {
  let path: string | undefined;
  try {
    const address = localAddress(fd);
    if (address.kind === 'path') path = address.path;
  } catch {
    // Not a UNIX socket: the server's own error path reports it.
  }
  if (path !== undefined) holdListenerFile(server, path);
}

/**
 * @internal Where a daemon listens, validated: a socket file path (string) or the fd of an
 * inherited listening socket (`{ fd }`, as number).
 */
export function listenTarget(field: string, value: unknown): string | number {
  if (v.isName(value)) return value;
  if (
    typeof value === 'object' &&
    value !== null &&
    Number.isInteger((value as { fd?: unknown }).fd) &&
    (value as { fd: number }).fd >= 0
  ) {
    return (value as { fd: number }).fd;
  }
  throw invalidArg(field, 'a socket file path, or { fd } of an inherited listening socket', value);
}

/**
 * @internal Makes a daemon's server listen where {@link listenTarget} said: on the inherited
 * fd, or on a socket file made by listen() with these options. Resolves once it listens.
 */
export async function listenAt(server: net.Server, where: string | number, options: ListenOptions): Promise<void> {
  if (typeof where === 'number') {
    listenOnFd(server, where);
    await once(server, 'listening');
  } else await listen(server, where, options);
}
