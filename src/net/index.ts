/** The net room's front door: verified servers and clients, the HTTP guard, safe socket files. */
export {
  createServer,
  type ServerOptions,
  type ConnectionListener,
  type DeniedListener,
  type DeniedEvents,
  type VerifiedServer,
} from './server.js';
export { guard, type GuardOptions, type GuardedServer } from './guard.js';
export { connect, type ConnectOptions } from './connect.js';
export { listen, type ListenOptions } from './listen.js';
export { peerOf } from './registry.js';
export { DEFAULT_HANDSHAKE_TIMEOUT, type VerifyOptions } from './verify.js';
export { CHANNELS, DECISION_CHANNEL, DENIED_CHANNEL, type DeniedMessage } from './channels.js';
// Used by other rooms of this package; not re-exported by the package root.
/** @internal */
export { connectWith, openSocket, type SocketOptions } from './connect.js';
export { Drain, type Daemon } from './drain.js';
/** @internal */
export { closeDaemon, daemonOf, registerDaemon } from './drain.js';
