/**
 * Changing a running gateway's policy, and reopening its log. A reload swaps what every
 * new request is decided by, on every connection, old ones included; a request already
 * decided keeps its verdict (its body check and its stream go on under the rule that
 * allowed it). The listening socket is never touched. A policy that cannot be used leaves
 * the running one in place.
 */
import type * as net from 'node:net';
import { readKeyFile } from '../challenge/index.js';
import { ErrorCode, invalidArg, SecpolicyError } from '../errors.js';
import { daemonOf } from '../net/index.js';
import type { Gateway } from './context.js';
import { upstreamGet, type UpstreamGet } from './docker-effective.js';
import { DockerProfile } from './docker-request.js';
import { connectSource, isGatewayPolicy, loadGatewayPolicy, type GatewayPolicy } from './policy.js';

/**
 * What a gateway derives from its policy: set at start and by every reload, together. The
 * Docker profile is made anew (its daemon's API version asked again) over `get`, the
 * gateway's GETs through its upstream (undefined only where nothing is forwarded: --check).
 */
export function derive(
  policy: GatewayPolicy,
  get: UpstreamGet | undefined,
): Pick<Gateway, 'policy' | 'audit' | 'docker' | 'profile' | 'key' | 'needsNames'> {
  return {
    policy,
    audit: policy.mode === 'audit',
    docker: policy.api === 'docker',
    profile: policy.api === 'docker' ? new DockerProfile(get) : undefined,
    key: policy.forward.signKeyFile === undefined ? undefined : readKeyFile(policy.forward.signKeyFile),
    // An owner rule names a peer in a container by its Docker name.
    needsNames: policy.rules.some((r) => r.dockerNames || r.dockerLimits?.owner === true),
  };
}

/** The function that makes gateways, as the daemon registry knows them. */
export const MADE_BY = 'createGateway()';

function stateOf(server: net.Server): Gateway {
  return daemonOf<Gateway>(server, MADE_BY);
}

/**
 * Replaces the policy of a running gateway: a GatewayPolicy, or the path of a policy file
 * (read with {@link loadGatewayPolicy}). On any failure (unreadable or invalid file, an
 * unknown user or group, an unreadable key file, a changed `connect`) the running policy
 * stays and the promise rejects with why. Counted in the metrics either way.
 */
export async function reloadGateway(server: net.Server, source: GatewayPolicy | string): Promise<GatewayPolicy> {
  const gw = stateOf(server);
  try {
    if (gw.closing) throw new SecpolicyError(ErrorCode.INVALID_ARG, 'the gateway is closing');
    const policy = typeof source === 'string' ? await loadGatewayPolicy(source) : source;
    if (!isGatewayPolicy(policy)) throw invalidArg('source', 'a GatewayPolicy or the path of a policy file', policy);
    if (connectSource.get(policy) !== connectSource.get(gw.policy))
      throw new SecpolicyError(
        ErrorCode.POLICY_FILE,
        '`connect` differs from the running policy: it is checked by the listening socket, which a reload keeps; restart the gateway to change it',
      );
    Object.assign(gw, derive(policy, upstreamGet(gw.agent, gw.target)));
    gw.metrics?.reloaded(true);
    return policy;
  } catch (e) {
    gw.metrics?.reloaded(false);
    throw e;
  }
}

/**
 * Opens the decision log file again at its path (after logrotate renamed it): entries
 * already queued go to the old file, later ones to the new. Throws when the path cannot
 * be opened; the old file is then kept.
 */
export function reopenGatewayLog(server: net.Server): void {
  stateOf(server).sink?.reopen();
}
