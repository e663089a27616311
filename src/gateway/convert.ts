/**
 * docker-socket-proxy's settings as a gateway policy. That project is HAProxy with one
 * allow line per API prefix, each switched on by an environment variable read as HAProxy
 * reads a boolean (a number, non-zero is on), after one gate: a request whose method is
 * not GET (or HEAD, which HAProxy counts as GET) is refused unless POST is on. A prefix
 * matches the path with or without a version, in any case. EVENTS, PING and VERSION are
 * on unless set to 0; ALLOW_START, ALLOW_STOP and ALLOW_RESTARTS (stop, restart, kill)
 * open those container actions without CONTAINERS, still behind the POST gate.
 *
 * The policy made here is the same but in three places, where the gateway is stricter:
 * a container's files (archive, export) are not read-only information and are not given
 * by CONTAINERS alone; creating an exec (under /containers) needs EXEC as well; and the
 * bodies of container create, update and exec are checked by the Docker profile's
 * limits (no privileged container, no host namespaces, devices, added capabilities or
 * host binds).
 */
import { stringify } from 'yaml';
import { parseGatewayPolicy } from './policy.js';

/** Each section variable and the API prefix it opens. */
export const SECTIONS: Readonly<Record<string, string>> = Object.freeze({
  AUTH: '/auth',
  BUILD: '/build',
  COMMIT: '/commit',
  CONFIGS: '/configs',
  CONTAINERS: '/containers',
  DISTRIBUTION: '/distribution',
  EVENTS: '/events',
  EXEC: '/exec',
  GRPC: '/grpc',
  IMAGES: '/images',
  INFO: '/info',
  NETWORKS: '/networks',
  NODES: '/nodes',
  PING: '/_ping',
  PLUGINS: '/plugins',
  SECRETS: '/secrets',
  SERVICES: '/services',
  SESSION: '/session',
  SWARM: '/swarm',
  SYSTEM: '/system',
  TASKS: '/tasks',
  VERSION: '/version',
  VOLUMES: '/volumes',
});

/** Container actions opened on their own. */
export const ACTIONS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  ALLOW_START: ['start'],
  ALLOW_STOP: ['stop'],
  ALLOW_RESTARTS: ['stop', 'restart', 'kill'],
});

/** On unless set otherwise. */
const DEFAULT_ON = new Set(['EVENTS', 'PING', 'VERSION']);

/** Variables of docker-socket-proxy that do not change what is allowed. */
const NOT_ACCESS = ['LOG_LEVEL', 'SOCKET_PATH', 'DISABLE_IPV6'];

/** How HAProxy's `env(X) -m bool` reads a value: a leading integer, non-zero is true; anything else is false. */
export function haproxyBool(value: string | undefined): boolean {
  if (value === undefined) return false;
  const m = /^\s*[-+]?\d+/.exec(value);
  return m !== null && Number.parseInt(m[0], 10) !== 0;
}

/** The settings in effect: every variable that matters, on or off. */
export function settingsOf(env: Readonly<Record<string, string | undefined>>): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  for (const name of ['POST', ...Object.keys(ACTIONS), ...Object.keys(SECTIONS)]) {
    const value = env[name];
    out[name] = value === undefined ? DEFAULT_ON.has(name) : haproxyBool(value);
  }
  return out;
}

/** Options of {@link convertDockerSocketProxy}. */
export interface ConvertOptions {
  /** The rule's `who` (a policy document). @default {} */
  who?: object;
  /** The rule's name. @default docker-socket-proxy */
  name?: string;
}

/** The gateway policy document for docker-socket-proxy's environment. */
export function dockerSocketProxyPolicy(env: Readonly<Record<string, string | undefined>>, options: ConvertOptions = {}): object {
  const s = settingsOf(env);
  const methods = s.POST ? ['*'] : ['GET', 'HEAD'];
  const allow: string[] = [];
  const deny: string[] = [];
  for (const [name, prefix] of Object.entries(SECTIONS)) {
    if (s[name]) for (const m of methods) allow.push(`${m} ${prefix}/**`);
  }
  const actions = new Set<string>();
  for (const [name, list] of Object.entries(ACTIONS)) if (s[name]) for (const a of list) actions.add(a);
  if (!s.CONTAINERS) for (const a of actions) for (const m of methods) allow.push(`${m} /containers/*/${a}`);
  if (s.CONTAINERS) {
    // Stricter: a container's files are given only where writing is (POST) as well.
    if (!s.POST) deny.push('GET /containers/*/archive', 'GET /containers/*/export');
    // Stricter: creating an exec needs EXEC, like starting one.
    if (s.POST && !s.EXEC) deny.push('POST /containers/*/exec');
  }
  const rule: Record<string, unknown> = { name: options.name ?? 'docker-socket-proxy', who: options.who ?? {}, allow };
  if (deny.length > 0) rule.deny = deny;
  // Stricter: bodies that create or change containers are checked (docker: limits, all closed).
  if (s.POST) rule.docker = {};
  return { version: 1, api: 'docker', rules: [rule] };
}

/** The policy as YAML, with a header saying where it came from; checked by the gateway's own parser first. */
export function convertDockerSocketProxy(env: Readonly<Record<string, string | undefined>>, options: ConvertOptions = {}): string {
  const doc = dockerSocketProxyPolicy(env, options);
  // What is printed must load: a `who` that is not a valid policy document fails here.
  parseGatewayPolicy(doc, { source: '--who' });
  const s = settingsOf(env);
  const on = Object.keys(s).filter((k) => s[k]);
  const ignored = NOT_ACCESS.filter((k) => env[k] !== undefined);
  const header = [
    '# A secpolicy gateway policy converted from docker-socket-proxy settings.',
    `# On: ${on.length ? on.join(' ') : '(nothing)'}`,
    ...(ignored.length ? [`# Not about access, left out: ${ignored.join(' ')}`] : []),
    '# Stricter than docker-socket-proxy: container archive/export need POST as well as CONTAINERS,',
    '# creating an exec needs EXEC as well as CONTAINERS and POST, and with POST container bodies are',
    '# checked by the docker: limits and only what the Docker profile models goes through (no network',
    '# create, build, plugins or swarm) (docs/migrating.md).',
  ];
  return `${header.join('\n')}\n${stringify(doc, { lineWidth: 0 })}`;
}
