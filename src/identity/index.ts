/** The identity room's front door. */
export { Peer, type Side, type PeerOptions } from './peer.js';
export { parseCgroup, containerOfPath, type Container, type CgroupInfo } from './container.js';
export { NAMESPACE_KINDS, type NamespaceKind, type Namespaces } from './namespaces.js';
export type { Pinning } from './pin.js';
