/**
 * The rules for one request: the first rule whose `who` matches the peer decides, its
 * deny patterns before its allow patterns; no rule for the peer is a denial. HEAD follows
 * GET: a HEAD is a GET without the body, so a deny pattern for GET denies HEAD too.
 */
import type { Conn, Verdict } from './context.js';
import { whoAdmits, type GatewayRule } from './policy.js';

/** Whether rule `i`'s `who` matches the connection's peer (cached per connection; Docker names expire). */
export function whoMatches(conn: Conn, i: number, rule: GatewayRule, now: number): boolean {
  if (rule.who === undefined) return true;
  if (conn.whoOf !== conn.gw.policy) {
    // A reload: what was worked out was about the rules of another policy.
    conn.who = [];
    conn.whoUntil = [];
    conn.whoOf = conn.gw.policy;
  }
  const cached = conn.who[i];
  if (cached !== undefined && (!rule.dockerNames || now < conn.whoUntil[i]!)) return cached;
  // The one evaluator, publishing nothing: a rule that does not match is no denial.
  const matched = whoAdmits(rule.who, conn.peer, conn.container);
  conn.who[i] = matched;
  if (rule.dockerNames) conn.whoUntil[i] = now + conn.gw.cacheMs;
  return matched;
}

/** The verdict on `method path` (the canonical, profile-matched path) from the connection's peer. */
export function decide(conn: Conn, method: string, path: string): Verdict {
  const now = conn.gw.needsNames ? Date.now() : 0;
  const rules = conn.gw.policy.rules;
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i]!;
    if (!whoMatches(conn, i, rule, now)) continue;
    for (const p of rule.deny) {
      if ((p.method === '*' || p.method === method || (p.method === 'GET' && method === 'HEAD')) && p.test(path))
        return { rule, allowed: false, pattern: p, why: `${method} ${path} is denied by "${p.source}"` };
    }
    for (const p of rule.allow) {
      if ((p.method === '*' || p.method === method) && p.test(path)) return { rule, allowed: true, pattern: p, why: '' };
    }
    return { rule, allowed: false, pattern: undefined, why: `${method} ${path} is not allowed` };
  }
  return { rule: undefined, allowed: false, pattern: undefined, why: 'no rule matches this peer' };
}
