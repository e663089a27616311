/** The policy room's front door. */
export { Policy, DEFAULT_TIMEOUT, type Decision, type PolicyOptions, type ApplyOptions } from './policy.js';
export { Result, resultNames, type ResultFlag } from './result.js';
export type { Rule, RuleContext, Check, Failure } from './rule.js';
export type { ContainerMatch, PeerCallback } from './table.js';
export { parsePolicy, loadPolicy, type ParsePolicyOptions } from './file.js';
// Used by other rooms of this package; not re-exported by the package root.
export { allOf } from './combinators.js';
export { evaluate } from './evaluate.js';
/** @internal */
export { parseDocumentWith, readPolicyText } from './file.js';
/** @internal */
export { SERVER_SIDE, knownPeer, type InternalApplyOptions } from './policy.js';
/** @internal */
export { makeDecision } from './decision.js';
export { PASS, fail, missing, unknown } from './rule.js';
export { isMapping, ruleOf, show, type FieldPath, type RuleExtensions, type Walk } from './schema.js';
