/**
 * The gateway in front of a test's dockerd, as the docker gateway tests start it: a
 * policy file written in the daemon's directory, and `secpolicy gateway` listening on
 * `gw/gw.sock` there with mode 0666. Also the curl request through it as another user.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startGateway, type Dockerd, type GatewayProcess } from '../helpers/dockerd.js';
import { run, type RunAs } from '../helpers/index.js';

/** Writes `policy` (YAML) to `gateway.yaml` and starts the gateway to `target` (the daemon's socket unless given). */
export async function startDockerGateway(
  daemon: Dockerd,
  policy: string,
  options: { target?: string; extra?: string[] } = {},
): Promise<GatewayProcess> {
  mkdirSync(join(daemon.dir, 'gw'), { mode: 0o755 });
  const file = join(daemon.dir, 'gateway.yaml');
  writeFileSync(file, policy);
  return startGateway({
    socket: join(daemon.dir, 'gw', 'gw.sock'),
    target: options.target ?? daemon.socket,
    policy: file,
    extra: ['--mode', '0666', ...(options.extra ?? [])],
  });
}

/** curl as `as` against the gateway at `socket`; `args` go before the URL. Returns the status and body. */
export async function curlAs(
  socket: string,
  as: RunAs,
  method: string,
  path: string,
  args: string[] = [],
): Promise<{ status: number; body: string }> {
  const r = await run(
    'curl',
    ['-sS', '--path-as-is', '--unix-socket', socket, '-X', method, '-w', '\n%{http_code}', ...args, `http://docker${path}`],
    { as },
  ).output();
  const at = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(at + 1)), body: r.stdout.slice(0, at) + r.stderr };
}

/** The curl arguments that send `body` as JSON. */
export const json = (body: string): string[] => ['-H', 'Content-Type: application/json', '--data-binary', body];
