/**
 * createProxy(): a policy-enforcing proxy in front of an existing UNIX socket. Clients
 * are verified by the same path as createServer(); an allowed client gets its own
 * connection to the target and bytes flow both ways with backpressure and half-close.
 */
import { once } from 'node:events';
import net from 'node:net';
import { invalidArg, type SecpolicyError } from '../errors.js';
import { log as debug } from '../net/channels.js';
import { createServer, listen, type VerifiedServer } from '../net/index.js';
import { Policy, type Decision } from '../policy/policy.js';
import * as v from '../policy/validate.js';
import { listenOnFd, listenTarget } from '../systemd/listeners.js';
import { splice, type Pair } from './splice.js';

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
  /** Mode of the socket file the proxy creates. @default 0o600 */
  mode?: number;
  /** Bound on verifying one client, in ms. @default 5000 */
  handshakeTimeout?: number;
  /**
   * Where the proxy reports denials and failures to reach the target, one line each
   * (never payloads or secrets). @default the `secpolicy` debuglog (NODE_DEBUG=secpolicy)
   */
  log?: (line: string) => void;
  /** Use a socket directory that others could write to (see `listen()`). @default false */
  allowInsecureDirectory?: boolean;
  /** Owner of the socket file (user name or uid), as `listen()` applies it. */
  owner?: string | number;
  /** Group of the socket file (group name or gid), as `listen()` applies it. */
  group?: string | number;
}

// The default 16 KiB stream buffers pause the reader after every 64 KiB read; a few
// chunks of room keep both sockets busy while still bounding memory per connection.
const HIGH_WATER_MARK = 256 * 1024;

/** The open connections of a proxy, and who waits for them to close. */
interface Active {
  pairs: Set<Pair>;
  drained?: () => void;
}

const proxies = new WeakMap<net.Server, Active>();

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
  const mode = v.mode('options.mode', o.mode ?? 0o600);
  const log = o.log === undefined ? (line: string) => debug('proxy: %s', line) : v.func<(line: string) => void>('options.log', o.log);
  const target = o.target;

  const active: Active = { pairs: new Set() };
  const server = createServer(
    {
      policy: o.policy,
      allowHalfOpen: true,
      highWaterMark: HIGH_WATER_MARK,
      ...(o.handshakeTimeout !== undefined && { handshakeTimeout: o.handshakeTimeout }),
    },
    (client, peer) => {
      const upstream = net.connect({ path: target, allowHalfOpen: true, highWaterMark: HIGH_WATER_MARK } as net.NetConnectOpts);
      const pair = splice(client, upstream, {
        onTargetError: (reason) =>
          log(`target ${target} unavailable for pid=${peer.pid} uid=${peer.uid}: ${reason}; client connection closed`),
        onClosed: () => {
          active.pairs.delete(pair);
          if (active.pairs.size === 0) active.drained?.();
        },
      });
      active.pairs.add(pair);
    },
  );
  // Without a log of its own, the secpolicy debuglog already has one line per denial.
  if (o.log !== undefined) server.on('denied', (reason: Decision | SecpolicyError) => log(deniedLine(reason)));
  proxies.set(server, active);
  if (typeof where === 'number') {
    listenOnFd(server, where);
    await once(server, 'listening');
  } else {
    await listen(server, where, {
      mode,
      ...(o.allowInsecureDirectory !== undefined && { allowInsecureDirectory: o.allowInsecureDirectory }),
      ...(o.owner !== undefined && { owner: o.owner }),
      ...(o.group !== undefined && { group: o.group }),
    });
  }
  return server;
}

/** One line about a refused client: who, and which rules failed (never payloads). */
export function deniedLine(reason: Decision | SecpolicyError): string {
  if ('allowed' in reason) {
    const p = reason.peer;
    return `denied pid=${p.pid} uid=${p.uid} gid=${p.gid}: ${reason.failures.map((f) => f.message).join('; ')}`;
  }
  return `refused a connection: ${reason.code}: ${reason.message}`;
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
  const active = proxies.get(server);
  if (!active) throw invalidArg('server', 'a server made by createProxy()', server);
  const grace = v.options<CloseProxyOptions>('options', options).grace ?? 10_000;
  if (typeof grace !== 'number' || !(grace >= 0) || grace > 2 ** 31 - 1)
    throw invalidArg('options.grace', 'a number of milliseconds from 0', grace);
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  const drained = new Promise<void>((resolve) => {
    if (active.pairs.size === 0) resolve();
    else active.drained = resolve;
  });
  const timer = setTimeout(() => {
    for (const pair of active.pairs) pair.destroy();
  }, grace);
  await Promise.all([closed, drained]);
  clearTimeout(timer);
}
