/**
 * createProxy(): a policy-enforcing proxy in front of an existing UNIX socket. Clients
 * are verified by the same path as createServer(); an allowed client gets its own
 * connection to the target (verified too when a target policy is given) and bytes flow
 * both ways with backpressure and half-close: through splice(2) in a worker thread where
 * the platform allows it, through JavaScript streams otherwise.
 */
import * as net from 'node:net';
import { ErrorCode, SecpolicyError, invalidArg, isSecpolicyError } from '../errors.js';
import { closeTaken, connectUnix, startRelay, takeSocket, type Relay, type TakenSocket } from '../native/index.js';
import { log as debug } from '../diagnostics.js';
import { connectWith, openSocket, type SocketOptions } from '../net/index.js';
import { createServer, type VerifiedServer } from '../net/index.js';
import { closeDaemon, daemonOf, Drain, registerDaemon, type Daemon } from '../net/index.js';
import type { Peer } from '../identity/index.js';
import { DEFAULT_TIMEOUT, Policy, type Decision } from '../policy/index.js';
import { escapeText } from '../escape.js';
import * as v from '../validate.js';
import { listenAt, listenTarget } from '../systemd/index.js';
import { endClient, pipeStreams, type Pair } from './streams.js';

/** How the proxy moves bytes: `splice` (a worker thread, zero-copy), `streams` (JavaScript), or `auto`. */
export type ProxyDataPath = 'auto' | 'splice' | 'streams';

/** Options of {@link createProxy}. */
export interface ProxyOptions {
  /**
   * The socket file the proxy listens on (created safely, see `listen()`), or `{ fd }`: a
   * listening socket the process inherited, such as one from `systemdSockets()`.
   */
  listen: string | { fd: number };
  /** The socket file of the service behind the proxy. */
  target: string;
  /** The policy every client must pass before a byte reaches the target. */
  policy: Policy;
  /**
   * The policy the *target* must pass (as `connect()` checks a server) before a client's
   * byte is forwarded to it, so that whoever binds the target path while the service is
   * down (a squatter) gets nothing. @default none: the target is trusted
   */
  targetPolicy?: Policy;
  /**
   * Bound on reaching (and verifying) the target for one client, in ms. A busy target
   * (its accept queue full) is tried again with a growing pause until then. @default 5000
   */
  targetTimeout?: number;
  /** Mode of the socket file the proxy creates. @default 0o600 */
  mode?: number;
  /** Bound on verifying one client, in ms. @default 5000 */
  handshakeTimeout?: number;
  /**
   * Where the proxy reports denials and failures to reach the target, one line each
   * (never payloads or secrets; control characters escaped). @default the `secpolicy`
   * debuglog (NODE_DEBUG=secpolicy)
   */
  log?: (line: string) => void;
  /** Use a socket directory that others could write to (see `listen()`). @default false */
  allowInsecureDirectory?: boolean;
  /** Owner of the socket file (user name or uid), as `listen()` applies it. */
  owner?: string | number;
  /** Group of the socket file (group name or gid), as `listen()` applies it. */
  group?: string | number;
  /**
   * `auto` uses the splice(2) relay when it can start and JavaScript streams otherwise
   * (see {@link proxyDataPath}); `splice` fails when the relay cannot start. @default 'auto'
   */
  dataPath?: ProxyDataPath;
}

/** Which data path a proxy uses, and why when it is not the relay. */
export interface ProxyDataPathInfo {
  path: 'splice' | 'streams';
  /** Why the relay is not used (undefined with `splice`). */
  reason?: string;
}

// The default 16 KiB stream buffers pause the reader after every 64 KiB read; a few
// chunks of room keep both sockets busy while still bounding memory per connection.
const HIGH_WATER_MARK = 256 * 1024;
const UPSTREAM: SocketOptions = { allowHalfOpen: true, highWaterMark: HIGH_WATER_MARK };

/** A proxy: its open connections, and what closing it stops. */
interface Active extends Daemon {
  relay: Relay | undefined;
  info: ProxyDataPathInfo;
  /** Aborted when closeProxy cuts the open connections: ends attempts to reach the target. */
  cutoff: AbortController;
}

const MADE_BY = 'createProxy()';

/**
 * Listens on `options.listen` and forwards each client that passes `options.policy` to
 * `options.target`. Resolves with the listening server once the socket file exists;
 * close it with {@link closeProxy}. The server emits `'denied'` like createServer's.
 */
export async function createProxy(options: ProxyOptions): Promise<VerifiedServer> {
  const o = v.options<ProxyOptions>('options', options);
  const where = listenTarget('options.listen', o.listen);
  if (!v.isName(o.target)) throw invalidArg('options.target', 'a socket file path', o.target);
  if (!(o.policy instanceof Policy)) throw invalidArg('options.policy', 'a Policy', o.policy);
  if (o.targetPolicy !== undefined && !(o.targetPolicy instanceof Policy))
    throw invalidArg('options.targetPolicy', 'a Policy', o.targetPolicy);
  const targetTimeout = v.timeout('options.targetTimeout', o.targetTimeout, DEFAULT_TIMEOUT);
  const mode = v.mode('options.mode', o.mode ?? 0o600);
  const dataPath = o.dataPath ?? 'auto';
  if (dataPath !== 'auto' && dataPath !== 'splice' && dataPath !== 'streams')
    throw invalidArg('options.dataPath', "'auto', 'splice' or 'streams'", dataPath);
  const log = o.log === undefined ? (line: string) => debug('proxy: %s', line) : v.func<(line: string) => void>('options.log', o.log);
  // Every line is escaped where it is made (deniedLine, targetLine): peers choose some of its text.
  const target = o.target;
  const targetPolicy = o.targetPolicy;

  const active: Active = {
    madeBy: MADE_BY,
    open: new Drain<Pair>(),
    relay: undefined,
    info: { path: 'streams', reason: "dataPath: 'streams' was asked for" },
    cutoff: new AbortController(),
    cut(): void {
      this.cutoff.abort(new SecpolicyError(ErrorCode.ABORTED, 'the proxy is closing'));
    },
    async stopped(): Promise<void> {
      await this.relay?.stop();
      this.relay = undefined;
    },
  };
  if (dataPath !== 'streams') {
    try {
      active.relay = await startRelay();
      active.info = { path: 'splice' };
    } catch (error) {
      if (dataPath === 'splice') throw error;
      active.info = { path: 'streams', reason: (error as Error).message };
    }
  }
  const track = (pair: Pair): void => active.open.add(pair);
  const untrack = (pair: Pair): void => active.open.delete(pair);

  const onClient = (client: net.Socket, peer: Peer): void => {
    // Counted from the start, so that closeProxy waits for (or cuts) a client still waiting on the target.
    let current: Pair = { destroy: () => client.destroy() };
    const handle: Pair = { destroy: () => current.destroy() };
    track(handle);
    const done = (): void => untrack(handle);
    client.on('error', () => {});
    const failed = (error: unknown): void => {
      if (client.destroyed) return done();
      const [what, why] = targetFailure(error);
      log(escapeText(`target ${target} ${what} for pid=${peer.pid} uid=${peer.uid}: ${why}; client connection closed`));
      current = endClient(client, done);
    };
    const relay = active.relay;
    if (relay && !targetPolicy) {
      // The relay's fast path: the target's fd straight from connect(2), no net.Socket for it.
      return reachTargetFd(target, targetTimeout, active.cutoff.signal, (upstream) => {
        if (!('fd' in upstream)) return failed(upstream);
        if (client.destroyed) {
          closeTaken(upstream.fd);
          return done();
        }
        current = joinFd(client, upstream, relay, done);
      });
    }
    // One signal for the whole proxy (its cut-off at close): a signal per connection costs the accept rate.
    reachTarget(target, targetPolicy, targetTimeout, active.cutoff.signal).then((upstream) => {
      if (client.destroyed) {
        upstream.destroy();
        return done();
      }
      current = join(client, upstream, active.relay, done);
    }, failed);
  };

  const server = createServer(
    {
      policy: o.policy,
      allowHalfOpen: true,
      highWaterMark: HIGH_WATER_MARK,
      ...(o.handshakeTimeout !== undefined && { handshakeTimeout: o.handshakeTimeout }),
    },
    onClient,
  );
  // Without a log of its own, the secpolicy debuglog already has one line per denial.
  if (o.log !== undefined) server.on('denied', (reason: Decision | SecpolicyError) => log(deniedLine(reason)));
  registerDaemon(server, active);
  try {
    await listenAt(server, where, {
      mode,
      ...(o.allowInsecureDirectory !== undefined && { allowInsecureDirectory: o.allowInsecureDirectory }),
      ...(o.owner !== undefined && { owner: o.owner }),
      ...(o.group !== undefined && { group: o.group }),
    });
  } catch (error) {
    await active.relay?.stop();
    throw error;
  }
  return server;
}

/** The target, connected (a full accept queue tried again until the deadline) and verified when a target policy is given. */
function reachTarget(path: string, policy: Policy | undefined, timeout: number, signal: AbortSignal): Promise<net.Socket> {
  if (policy) return connectWith({ path, policy, timeout, signal }, UPSTREAM);
  return openSocket(path, signal, { ...UPSTREAM, busyTimeout: timeout });
}

const FIRST_RETRY_MS = 5;
const MAX_RETRY_MS = 100;

/**
 * The target as a raw fd for the relay: connect(2) at once, and while its accept queue is
 * full (EAGAIN) again with a growing pause until `timeout`; `done` gets the fd or the error.
 */
function reachTargetFd(path: string, timeout: number, signal: AbortSignal, done: (result: TakenSocket | SecpolicyError) => void): void {
  let delay = FIRST_RETRY_MS;
  let busySince = 0;
  const attempt = (): void => {
    if (signal.aborted) return done(signal.reason as SecpolicyError);
    const result = connectUnix(path);
    if ('fd' in result) return done(result);
    if (result.code !== 'EAGAIN') {
      const cause = Object.assign(new Error(`connect ${result.code} ${path}`), {
        code: result.code,
        errno: result.errno,
        syscall: 'connect',
      });
      return done(new SecpolicyError(ErrorCode.CONNECT, `cannot connect to ${path}: ${result.code}`, { cause, path, errno: result.errno }));
    }
    const now = Date.now();
    if (busySince === 0) busySince = now;
    if (now - busySince + delay > timeout)
      return done(new SecpolicyError(ErrorCode.TIMEOUT, `${path} stayed busy (its accept queue full) for ${timeout} ms`, { path }));
    setTimeout(attempt, delay);
    delay = Math.min(delay * 2, MAX_RETRY_MS);
  };
  attempt();
}

/** Joins an allowed client and the target's raw fd on the relay; in JavaScript when the client cannot be handed over. */
function joinFd(client: net.Socket, upstream: TakenSocket, relay: Relay, onClosed: () => void): Pair {
  let a: TakenSocket | undefined;
  try {
    if (client.writableLength === 0) a = takeSocket(client);
  } catch {
    // Left as it was: the JavaScript path below takes it.
  }
  if (a) return joinTaken(a, upstream, relay, onClosed);
  if (client.destroyed) return gone(upstream, onClosed);
  const socket = new net.Socket({ fd: upstream.fd, readable: true, writable: true, allowHalfOpen: true });
  return pipeStreams(client, socket, onClosed);
}

/** Both fds on the relay; when the relay cannot take them (it has stopped), both are closed. */
function joinTaken(a: TakenSocket, b: TakenSocket, relay: Relay, onClosed: () => void): Pair {
  try {
    const id = relay.join(a, b, () => onClosed());
    return { destroy: () => relay.destroy(id) };
  } catch (error) {
    debug('proxy: hand-over failed: %s', (error as Error).message);
    closeTaken(a.fd);
    return gone(b, onClosed);
  }
}

/** A pair that ended before it began: the fd closed, `onClosed` called soon after. */
function gone(fd: TakenSocket, onClosed: () => void): Pair {
  closeTaken(fd.fd);
  queueMicrotask(onClosed);
  return { destroy: () => {} };
}

/** What went wrong reaching the target, for the log line: what happened, and why. */
function targetFailure(error: unknown): [string, string] {
  if (!isSecpolicyError(error)) return ['unavailable', (error as Error)?.message ?? String(error)];
  if (error.code === ErrorCode.DENIED) {
    const decision = error.decision as Decision;
    const p = decision.peer;
    return [`failed the target policy (server pid=${p.pid} uid=${p.uid})`, decision.failures.map((f) => f.message).join('; ')];
  }
  if (error.code === ErrorCode.CONNECT) return ['unavailable', (error.cause as NodeJS.ErrnoException | undefined)?.code ?? error.message];
  return ['unavailable', `${error.code}: ${error.message}`];
}

/**
 * Joins an allowed client and its upstream: on the relay when there is one (both fds
 * taken from Node, the bytes Node already read delivered first), in JavaScript otherwise
 * or when a socket cannot be handed over (writes still queued).
 */
function join(client: net.Socket, upstream: net.Socket, relay: Relay | undefined, onClosed: () => void): Pair {
  if (relay && client.writableLength === 0 && upstream.writableLength === 0) {
    let a: TakenSocket | undefined;
    try {
      a = takeSocket(client);
    } catch {
      // Left as it was: the JavaScript path below takes it.
    }
    if (a) {
      let b: TakenSocket;
      try {
        b = takeSocket(upstream);
      } catch (error) {
        debug('proxy: hand-over failed: %s', (error as Error).message);
        upstream.destroy();
        return gone(a, onClosed);
      }
      return joinTaken(a, b, relay, onClosed);
    }
  }
  return pipeStreams(client, upstream, onClosed);
}

/** One line about a refused client: who, and which rules failed (never payloads), escaped by {@link escapeText}. */
export function deniedLine(reason: Decision | SecpolicyError): string {
  if ('allowed' in reason) {
    const p = reason.peer;
    return escapeText(`denied pid=${p.pid} uid=${p.uid} gid=${p.gid}: ${reason.failures.map((f) => f.message).join('; ')}`);
  }
  return escapeText(`refused a connection: ${reason.code}: ${reason.message}`);
}

/** The data path a proxy made by {@link createProxy} uses, and why when it is not the splice(2) relay. */
export function proxyDataPath(server: net.Server): ProxyDataPathInfo {
  return { ...daemonOf<Active>(server, MADE_BY).info };
}

/** Options of {@link closeProxy}. */
export interface CloseProxyOptions {
  /** How long open connections may go on before they are cut, in ms. @default 10000 */
  grace?: number;
}

/**
 * Stops a proxy: no new connections, the socket file removed, open connections allowed
 * to finish for `grace` ms and then cut. Resolves when every connection is closed.
 */
export async function closeProxy(server: net.Server, options?: CloseProxyOptions): Promise<void> {
  await closeDaemon(server, MADE_BY, options);
}
