/** The policy room's front door. */
export { Policy, DEFAULT_TIMEOUT, type Decision, type PolicyOptions, type ApplyOptions } from './policy.js';
export { Result, resultNames, type ResultFlag } from './result.js';
export type { Rule, RuleContext, Check, Failure } from './rule.js';
export type { ContainerMatch, PeerCallback } from './table.js';
export { parsePolicy, loadPolicy, type ParsePolicyOptions } from './file.js';
