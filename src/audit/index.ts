/** The audit room's front door. */
export { audit, type AuditOptions, type SocketReport, type HolderReport } from './audit.js';
export { SEVERITIES, FindingCode, severityRank, checkFile, type Finding, type Severity, type FileCheck } from './findings.js';
export type { ListeningSocket, SocketKind, ListSource } from './list.js';
export { inspect, type PeerReport, type InspectOptions } from './inspect.js';
// Used by other rooms of this package; not re-exported by the package root.
export { dial } from './dial.js';
