/**
 * secpolicy: peer authentication for UNIX domain sockets on Linux.
 * Everything public is re-exported here; anything else is internal.
 */
export { SecpolicyError, isSecpolicyError, ErrorCode, type SecpolicyErrorOptions } from './errors.js';
export {
  Policy,
  DEFAULT_TIMEOUT,
  type Decision,
  type PolicyOptions,
  type ApplyOptions,
  Result,
  resultNames,
  type ResultFlag,
  type Rule,
  type RuleContext,
  type Check,
  type Failure,
  type ContainerMatch,
  type PeerCallback,
  parsePolicy,
  loadPolicy,
  type ParsePolicyOptions,
} from './policy/index.js';
export {
  Peer,
  type Side,
  type PeerOptions,
  parseCgroup,
  containerOfPath,
  type Container,
  type CgroupInfo,
  NAMESPACE_KINDS,
  type NamespaceKind,
  type Namespaces,
  type Pinning,
} from './identity/index.js';
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
export { inspect, type PeerReport, type InspectOptions } from './audit/index.js';
export {
  createServer,
  type ServerOptions,
  type ConnectionListener,
  type DeniedListener,
  type DeniedEvents,
  type VerifiedServer,
  guard,
  type GuardOptions,
  type GuardedServer,
  connect,
  type ConnectOptions,
  listen,
  type ListenOptions,
  peerOf,
  DEFAULT_HANDSHAKE_TIMEOUT,
  type VerifyOptions,
  CHANNELS,
  DECISION_CHANNEL,
  DENIED_CHANNEL,
  type DeniedMessage,
} from './net/index.js';
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
export {
  createGateway,
  closeGateway,
  type GatewayOptions,
  type CloseGatewayOptions,
  reloadGateway,
  reopenGatewayLog,
  explainRequest,
  parseIdentity,
  type StatedIdentity,
  type Explanation,
  type ExplainOptions,
  convertDockerSocketProxy,
  dockerSocketProxyPolicy,
  type ConvertOptions,
  parseGatewayPolicy,
  loadGatewayPolicy,
  isGatewayPolicy,
  DEFAULT_MAX_BODY,
  DEFAULT_LIMITS,
  type GatewayPolicy,
  type GatewayLimits,
  type GatewayRule,
  type ForwardOptions,
  type ParseGatewayPolicyOptions,
  type DockerLimits,
  verifyIdentity,
  IDENTITY_HEADERS,
  type IdentityValues,
  type VerifyIdentityOptions,
  type VerifiedIdentity,
  type GatewayLog,
  type GatewayLogEntry,
  type LogPeer,
} from './gateway/index.js';
export { proxyDataPath, type ProxyDataPath, type ProxyDataPathInfo } from './proxy/index.js';
