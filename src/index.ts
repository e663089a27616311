/**
 * secpolicy: peer authentication for UNIX domain sockets on Linux.
 * Everything public is re-exported here; anything else is internal.
 */
export { SecpolicyError, isSecpolicyError, ErrorCode, type SecpolicyErrorOptions } from './errors.js';
export * from './policy/index.js';
export * from './identity/index.js';
export { MAX_DIGEST_BYTES } from './identity/digest.js';
export type { ChallengeCreate, ChallengeVerify, ChallengeSolve, SharedSecret } from './challenge/index.js';
export {
  encodeFrame,
  FrameDecoder,
  FrameType,
  DEFAULT_MAX_PAYLOAD,
  readKeyFile,
  writeKeyFile,
  MIN_KEY_LENGTH,
  type Frame,
} from './challenge/index.js';
export { configureNameCache, clearNameCache, type NameCacheOptions } from './native/index.js';
export { userName, groupName, primaryGidOf } from './native/index.js';
export {
  audit,
  SEVERITIES,
  FindingCode,
  type AuditOptions,
  type SocketReport,
  type HolderReport,
  type Finding,
  type Severity,
} from './audit/index.js';
export { inspect, type PeerReport, type InspectOptions } from './audit/inspect.js';
export * from './net/index.js';
export { createProxy, closeProxy, type ProxyOptions, type CloseProxyOptions } from './proxy/index.js';
export {
  systemdListeners,
  systemdSockets,
  notify,
  startWatchdog,
  type ActivatedSocket,
  type SystemdListenersOptions,
  type Watchdog,
  type WatchdogOptions,
} from './systemd/index.js';
export * from './gateway/index.js';
export { proxyDataPath, type ProxyDataPath, type ProxyDataPathInfo } from './proxy/index.js';
