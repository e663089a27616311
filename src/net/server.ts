/** createServer(): a net.Server whose connections are verified before anyone sees them. */
import * as net from 'node:net';
import { invalidArg, type SecpolicyError } from '../errors.js';
import type { Peer } from '../identity/index.js';
import { Policy, type Decision } from '../policy/index.js';
import * as v from '../validate.js';
import { peerOf } from './registry.js';
import { installVerifier, verifierConfig, type VerifyOptions } from './verify.js';

/** Options of {@link createServer}: a policy, verification bounds, and net.Server's own options. */
export interface ServerOptions extends VerifyOptions, net.ServerOpts {
  /** The policy every peer must pass before the application sees its connection. */
  policy: Policy;
}

/** The listener of {@link createServer}: an allowed connection and its verified peer. */
export type ConnectionListener = (socket: net.Socket, peer: Peer) => void;

/** A `'denied'` listener: the Decision that denied the peer, or the error that stopped its verification. */
export type DeniedListener = (reason: Decision | SecpolicyError, socket: net.Socket) => void;

/** The typed `'denied'` event of the servers createServer(), guard() and createProxy() return. */
export interface DeniedEvents {
  on(event: 'denied', listener: DeniedListener): this;
  once(event: 'denied', listener: DeniedListener): this;
  addListener(event: 'denied', listener: DeniedListener): this;
  prependListener(event: 'denied', listener: DeniedListener): this;
  off(event: 'denied', listener: DeniedListener): this;
}

/** The server {@link createServer} returns: a net.Server with a typed `'denied'` event. */
export interface VerifiedServer extends net.Server {
  on(event: 'denied', listener: DeniedListener): this;
  on(event: 'connection', listener: (socket: net.Socket) => void): this;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  once(event: 'denied', listener: DeniedListener): this;
  once(event: 'connection', listener: (socket: net.Socket) => void): this;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  once(event: string | symbol, listener: (...args: any[]) => void): this;
}

/**
 * A net.Server that verifies each peer against `options.policy`. The listener and the
 * server's `'connection'` event see only allowed peers; a denied socket is destroyed first
 * and the server emits `'denied'` with `(decision | error, socket)`. Policies with a
 * challenge or a callback are awaited, bounded by `handshakeTimeout`; the others are
 * decided synchronously on accept.
 */
export function createServer(options: ServerOptions, listener?: ConnectionListener): VerifiedServer {
  const o = v.options<ServerOptions>('options', options);
  if (!(o.policy instanceof Policy)) throw invalidArg('options.policy', 'a Policy', o.policy);
  if (listener !== undefined) v.func('listener', listener);
  const config = verifierConfig(o.policy, o, 'server', 'options');
  const { policy: _policy, handshakeTimeout: _timeout, maxConnectionsPerUid: _max, maxPayload: _maxPayload, ...netOptions } = o;
  const server = net.createServer(netOptions);
  installVerifier(server, config);
  if (listener) server.on('connection', (socket: net.Socket) => listener(socket, peerOf(socket)!));
  return server as VerifiedServer;
}
