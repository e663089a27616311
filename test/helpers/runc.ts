/**
 * Real containers for tests: runc with a tiny static rootfs (busybox-static, plus static
 * binaries the test puts in), cgroupsPath /docker/<64 hex> so that the container looks
 * like a docker one from the host (or another path the test names), and bind mounts for
 * the socket directory.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { needCommand, needRoot, run } from './index.js';

const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
let probed: string | false | undefined;

/** A reason to skip container tests (not root, runc or a static busybox or cc missing, runc cannot run here), else false. */
export function needRunc(): string | false {
  if (probed !== undefined) return probed;
  probed =
    needRoot('runs containers (runc)') ||
    needCommand('runc', 'cc') ||
    (BUSYBOX ? false : 'needs busybox-static (apt-get install -y busybox-static)');
  if (probed === false) {
    const libc = spawnSync('cc', ['-static', '-x', 'c', '-o', '/dev/null', '-'], { input: 'int main(void){return 0;}' });
    if (libc.status !== 0) probed = 'needs a static libc for cc -static (apt-get install -y libc6-dev)';
  }
  if (probed === false) probed = probeRunc();
  return probed;
}

/** Runs `busybox true` in a throwaway container: runc may be installed yet unable to run here (no cgroup access, nested without privileges). */
function probeRunc(): string | false {
  const bundle = mkdtempSync(join(tmpdir(), 'secpolicy-runc-probe-'));
  try {
    const id = prepareBundle({ bundle, args: ['/bin/busybox', 'true'] });
    const r = spawnSync('runc', ['run', '--bundle', bundle, id], { encoding: 'utf8', timeout: 30_000 });
    spawnSync('runc', ['delete', '--force', id], { stdio: 'ignore' });
    return r.status === 0 ? false : `runc cannot run a container here: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`;
  } finally {
    rmSync(bundle, { recursive: true, force: true });
  }
}

/** Compiles C source into a static binary at `out`. */
export function compileStatic(source: string, out: string, defines: string[] = []): void {
  mkdirSync(dirname(out), { recursive: true });
  const r = spawnSync('cc', ['-static', '-O2', ...defines.map((d) => `-D${d}`), '-x', 'c', '-o', out, '-'], {
    input: source,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`cc -static failed: ${r.stderr}`);
}

/** A bind mount into the container. */
export interface BindMount {
  source: string;
  destination: string;
  readonly?: boolean;
}

/** Options of {@link runContainer}. */
export interface ContainerOptions {
  /** Directory for the bundle (rootfs and config.json); the caller removes it. */
  bundle: string;
  /** The command, as the container sees it. */
  args: string[];
  /** Files copied into the rootfs: [host file, path inside the container]. */
  files?: Array<[string, string]>;
  mounts?: BindMount[];
  /** The cgroup path runc puts the container in, with `{id}` for its id. @default '/docker/{id}' */
  cgroupsPath?: string;
}

/** A running container: its id (64 hex digits), the runc process, and a stop() for t.after. */
export interface RunningContainer {
  id: string;
  child: ReturnType<typeof run>;
  stop: () => Promise<void>;
}

/** Writes rootfs and config.json into the bundle; returns the container id (64 hex digits). */
function prepareBundle(options: ContainerOptions): string {
  const id = randomBytes(32).toString('hex');
  const rootfs = join(options.bundle, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  copyFileSync(BUSYBOX!, join(rootfs, 'bin', 'busybox'));
  for (const [from, to] of options.files ?? []) {
    mkdirSync(dirname(join(rootfs, to)), { recursive: true });
    copyFileSync(from, join(rootfs, to));
    spawnSync('chmod', ['0755', join(rootfs, to)]);
  }
  for (const m of options.mounts ?? []) mkdirSync(join(rootfs, m.destination), { recursive: true });
  const spec = spawnSync('runc', ['spec', '--bundle', options.bundle], { encoding: 'utf8' });
  if (spec.status !== 0) throw new Error(`runc spec failed: ${spec.stderr}`);
  const configPath = join(options.bundle, 'config.json');
  const config = JSON.parse(readFileSync(configPath, 'utf8'));
  config.process.terminal = false;
  config.process.args = options.args;
  config.root = { path: 'rootfs', readonly: true };
  config.linux.cgroupsPath = (options.cgroupsPath ?? '/docker/{id}').replace('{id}', id);
  for (const m of options.mounts ?? []) {
    config.mounts.push({ destination: m.destination, type: 'bind', source: m.source, options: ['rbind', m.readonly ? 'ro' : 'rw'] });
  }
  writeFileSync(configPath, JSON.stringify(config));
  return id;
}

/** Runs a container in the foreground of a `runc run` child process (no terminal). */
export function runContainer(options: ContainerOptions): RunningContainer {
  const id = prepareBundle(options);
  const child = run('runc', ['run', '--bundle', options.bundle, id]);
  const stop = async () => {
    spawnSync('runc', ['kill', id, 'KILL'], { stdio: 'ignore' });
    await child.output();
    spawnSync('runc', ['delete', '--force', id], { stdio: 'ignore' });
  };
  return { id, child, stop };
}
