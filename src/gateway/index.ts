/** The identity-aware HTTP gateway: requests decided by who sent them (and, for Docker, by what their bodies ask). */
export { createGateway, closeGateway, type GatewayOptions, type CloseGatewayOptions } from './gateway.js';
export { reloadGateway, reopenGatewayLog } from './reload.js';
export { explainRequest, parseIdentity, type StatedIdentity, type Explanation, type ExplainOptions } from './explain.js';
export { convertDockerSocketProxy, dockerSocketProxyPolicy, type ConvertOptions } from './convert.js';
export {
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
} from './policy.js';
export type { DockerLimits } from './docker.js';
export { verifyIdentity, IDENTITY_HEADERS, type IdentityValues, type VerifyIdentityOptions, type VerifiedIdentity } from './identity.js';
export type { GatewayLog, GatewayLogEntry, LogPeer } from './log.js';
// Used by other rooms of this package; not re-exported by the package root.
export { derive } from './reload.js';
/** @internal */
export { countReload, metricsOf, prepareReload, type PreparedReload } from './reload.js';
/** @internal */
export { openGateway, type GatewayInternals } from './gateway.js';
export { groupMetricsText, type MetricsJson } from './metrics.js';
/** @internal */
export { batched, type LogSink } from './log.js';
/** @internal */
export { LocalCount, type ConnectionCount, type Taken } from './count.js';
