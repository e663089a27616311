/** The identity room's front door. */
export { Peer, type Side, type PeerOptions } from './peer.js';
export { parseCgroup, containerOfPath, type Container, type CgroupInfo } from './container.js';
export { NAMESPACE_KINDS, type NamespaceKind, type Namespaces } from './namespaces.js';
export type { Pinning } from './pin.js';
// Used by other rooms of this package; not re-exported by the package root.
export { MAX_HOLDER_DIGEST_BYTES, executableDigest, executableDigestAsync } from './digest.js';
export { socketHolders, stillHolds, type Holder, type HolderScan, type OurEnd, type ScanProgress } from './holders.js';
export { holdListenerFile } from './listener-file.js';
export { ownNamespaces } from './namespaces.js';
export { absent, no, ok, type Outcome } from './outcome.js';
export {
  ATTRIBUTES,
  CAPABILITY_NAMES,
  isAttribute,
  type AsyncAttributeName,
  type AttributeDef,
  type AttributeName,
  type AttributeSource,
  type AttributeTypes,
  type DockerContainer,
  type HolderScanOf,
  type Lookups,
} from './proc-attributes.js';
export { idUnmapped } from './proc.js';
