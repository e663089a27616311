/**
 * Changing a running gateway's policy, and reopening its log. A reload swaps what every
 * new request is decided by, on every connection, old ones included; a request already
 * decided keeps its verdict (its body check and its stream go on under the rule that
 * allowed it). The listening socket is never touched. A policy that cannot be used leaves
 * the running one in place.
 */
import type * as net from 'node:net';
import type { Registry } from 'prom-client';
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
    const prepared = await prepareReload(server, source);
    prepared.apply();
    gw.metrics?.reloaded(true);
    return prepared.policy;
  } catch (e) {
    gw.metrics?.reloaded(false);
    throw e;
  }
}

/** @internal Counts a reload decided outside {@link reloadGateway} (a group's, for all its processes). */
export function countReload(server: net.Server, ok: boolean): void {
  stateOf(server).metrics?.reloaded(ok);
}

/** @internal The registry of a gateway's metrics, when it counts them. */
export function metricsOf(server: net.Server): Registry | undefined {
  return stateOf(server).metrics?.registry;
}

/** @internal A reload checked and compiled against a running gateway, not applied yet. */
export interface PreparedReload {
  readonly policy: GatewayPolicy;
  /** Swaps the policy in: synchronous, so no request sees half of it. */
  apply(): void;
}

/**
 * @internal Everything {@link reloadGateway} does but the swap and the count: what a
 * gateway of several processes prepares in each before any of them applies it. Rejects
 * as reloadGateway does.
 */
export async function prepareReload(server: net.Server, source: GatewayPolicy | string): Promise<PreparedReload> {
  const gw = stateOf(server);
  if (gw.closing) throw new SecpolicyError(ErrorCode.INVALID_ARG, 'the gateway is closing');
  const policy = typeof source === 'string' ? await loadGatewayPolicy(source) : source;
  if (!isGatewayPolicy(policy)) throw invalidArg('source', 'a GatewayPolicy or the path of a policy file', policy);
  if (connectSource.get(policy) !== connectSource.get(gw.policy))
    throw new SecpolicyError(
      ErrorCode.POLICY_FILE,
      '`connect` differs from the running policy: it is checked by the listening socket, which a reload keeps; restart the gateway to change it',
    );
  const next = derive(policy, upstreamGet(gw.agent, gw.target));
  return { policy, apply: () => void Object.assign(gw, next) };
}

/**
 * Opens the decision log file again at its path (after logrotate renamed it): entries
 * already queued go to the old file, later ones to the new. Throws when the path cannot
 * be opened; the old file is then kept.
 */
export function reopenGatewayLog(server: net.Server): void {
  stateOf(server).sink?.reopen();
}
