import assert from 'node:assert/strict';
import { test } from 'node:test';
import { containerOfPath, hostLayout, parseCgroup as parseFull } from '../../src/identity/container.js';

/** The path and container of a parse (the other fields, lines and hierarchies, are checked in cgroups.test.ts). */
const parseCgroup = (text: string) => {
  const { path, container } = parseFull(text);
  return { path, container };
};

const ID = '3f4a1b2c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f701';
const ID2 = 'c0ffee0000000000000000000000000000000000000000000000000000000042';
const POD = '0b8f4c1e_7d2a_4e3b_9a61_5f2c8d9e0a17';

const v1 = (path: string, extra = '') =>
  [`12:memory:${path}`, `11:cpu,cpuacct:${path}`, `10:pids:${path}`, `9:devices:${path}`, `1:name=systemd:${path}${extra}`, '0::/'].join(
    '\n',
  ) + '\n';

test('docker: cgroupfs driver (v1 and v2) and systemd driver', () => {
  assert.deepEqual(parseCgroup(v1(`/docker/${ID}`)).container, { runtime: 'docker', id: ID });
  assert.deepEqual(parseCgroup(`0::/docker/${ID}\n`), { path: `/docker/${ID}`, container: { runtime: 'docker', id: ID } });
  assert.deepEqual(parseCgroup(`0::/system.slice/docker-${ID}.scope\n`).container, { runtime: 'docker', id: ID });
  // Rootless docker under the user's systemd instance.
  assert.deepEqual(containerOfPath(`/user.slice/user-1000.slice/user@1000.service/docker-${ID}.scope`), { runtime: 'docker', id: ID });
  // dockerd itself is on the host.
  assert.equal(parseCgroup('0::/system.slice/docker.service\n').container, null);
});

test('Kubernetes CRI: containerd and cri-o, systemd and cgroupfs drivers', () => {
  const slice = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${POD}.slice`;
  assert.deepEqual(parseCgroup(`0::${slice}/cri-containerd-${ID}.scope\n`).container, { runtime: 'containerd', id: ID });
  assert.deepEqual(parseCgroup(`0::${slice}/crio-${ID}.scope\n`).container, { runtime: 'cri-o', id: ID });
  // conmon, cri-o's monitor, runs on the host side of the pod.
  assert.equal(parseCgroup(`0::${slice}/crio-conmon-${ID}.scope\n`).container, null);
  assert.deepEqual(parseCgroup(v1(`/kubepods/besteffort/pod${POD.replace(/_/g, '-')}/${ID}`)).container, { runtime: 'containerd', id: ID });
  assert.deepEqual(parseCgroup(v1(`/kubepods/pod${POD.replace(/_/g, '-')}/crio-${ID}`)).container, { runtime: 'cri-o', id: ID });
  // The pod's own cgroup (pause-less processes, kubelet accounting) is no container.
  assert.equal(parseCgroup(`0::${slice}\n`).container, null);
});

test("containerd's defaults: ctr (/namespace/id) and nerdctl", () => {
  assert.deepEqual(parseCgroup('0::/default/redis-server\n').container, { runtime: 'containerd', id: 'redis-server' });
  assert.deepEqual(parseCgroup(`0::/k8s.io/${ID}\n`).container, { runtime: 'containerd', id: ID });
  assert.deepEqual(parseCgroup(`0::/system.slice/nerdctl-${ID}.scope\n`).container, { runtime: 'containerd', id: ID });
  // Any other two-level path is not taken for a container.
  assert.equal(parseCgroup('0::/system.slice/cron.service\n').container, null);
});

test('podman: rootful and rootless systemd scopes, cgroupfs; conmon is not the container', () => {
  assert.deepEqual(parseCgroup(`0::/machine.slice/libpod-${ID}.scope/container\n`).container, { runtime: 'podman', id: ID });
  assert.deepEqual(parseCgroup(`0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${ID}.scope\n`).container, {
    runtime: 'podman',
    id: ID,
  });
  assert.deepEqual(parseCgroup(v1(`/libpod_parent/libpod-${ID}`)).container, { runtime: 'podman', id: ID });
  assert.equal(parseCgroup(`0::/machine.slice/libpod-conmon-${ID}.scope\n`).container, null);
});

test('LXC / LXD: lxc.payload on v2, /lxc/<name> on v1; the monitor is on the host', () => {
  assert.deepEqual(parseCgroup('0::/lxc.payload.web1\n'), { path: '/lxc.payload.web1', container: { runtime: 'lxc', id: 'web1' } });
  assert.deepEqual(parseCgroup('0::/lxc.payload.web1/system.slice/nginx.service\n').container, { runtime: 'lxc', id: 'web1' });
  assert.deepEqual(parseCgroup(v1('/lxc/db-2')).container, { runtime: 'lxc', id: 'db-2' });
  assert.equal(parseCgroup('0::/lxc.monitor.web1\n').container, null);
});

test('systemd-nspawn: machine scopes, unit-name escaping undone', () => {
  assert.deepEqual(parseCgroup('0::/machine.slice/machine-fedora.scope/payload\n').container, { runtime: 'systemd-nspawn', id: 'fedora' });
  assert.deepEqual(parseCgroup(v1('/machine.slice/machine-debian\\x2dbookworm.scope')).container, {
    runtime: 'systemd-nspawn',
    id: 'debian-bookworm',
  });
});

test('host processes: no container; the path is the most telling line', () => {
  assert.deepEqual(parseCgroup('0::/user.slice/user-1000.slice/session-2.scope\n'), {
    path: '/user.slice/user-1000.slice/session-2.scope',
    container: null,
  });
  assert.deepEqual(parseCgroup('0::/init.scope\n'), { path: '/init.scope', container: null });
  // A hybrid host: the v2 tree is empty, the v1 hierarchies say where the process is.
  const hybrid = '4:memory:/system.slice/cron.service\n3:cpuset:/\n2:cpu,cpuacct:/system.slice\n0::/\n';
  assert.deepEqual(parseCgroup(hybrid), { path: '/system.slice/cron.service', container: null });
  // Inside a container's own cgroup namespace the path is just '/'.
  assert.deepEqual(parseCgroup('0::/\n'), { path: '/', container: null });
});

test('the host layouts recognised: the root, systemd slices and their units, session and systemd-run scopes', () => {
  for (const path of [
    '/',
    '/init.scope',
    '/system.slice',
    '/system.slice/nginx.service',
    '/system.slice/system-getty.slice/getty@tty1.service',
    '/system.slice/docker.socket',
    '/system.slice/containerd.service/.control',
    '/system.slice/run-r3b0c2a1d4e5f.scope',
    '/user.slice',
    '/user.slice/user-1000.slice/session-2.scope',
    '/user.slice/user-1000.slice/user@1000.service',
    '/user.slice/user-1000.slice/user@1000.service/init.scope',
    '/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-1234.scope',
    '/lxc.monitor.web1',
  ]) {
    assert.equal(hostLayout(path), true, path);
    assert.equal(parseCgroup(`0::${path}\n`).container, null, path);
  }
});

test('a layout that names no container and is not a host layout is unknown, never "no container"', () => {
  for (const path of [
    '/process_api/14e3bc12a1227ad0ef7fb597ebc042a2',
    '/secpolicy/box',
    '/system.slice/ci-runner.service/job-42',
    '/system.slice/runc-box.scope',
    '/machine.slice/kata-box.scope',
    '/kubepods/besteffort/pod0b8f4c1e-7d2a-4e3b-9a61-5f2c8d9e0a17',
    '/init.scope/x',
    '/user.slice/user-1000.slice/user@1000.service/app.slice/app.service/sub',
  ]) {
    assert.equal(hostLayout(path), false, path);
    const info = parseFull(`0::${path}\n`);
    assert.equal(info.container, undefined, path);
    assert.match(info.unrecognised ?? '', new RegExp(`cgroup ${path.replace(/[.]/g, '\\.')} \\(cgroup v2\\) is not a layout`), path);
  }
  // On v1 every hierarchy must be a host layout; one that is not makes the whole unknown.
  const text = `4:memory:/secpolicy/box\n3:cpuset:/\n1:name=systemd:/system.slice/cron.service\n0::/\n`;
  assert.equal(parseFull(text).container, undefined);
  assert.match(parseFull(text).unrecognised ?? '', /\/secpolicy\/box \(the memory hierarchy\)/);
});

test("docker's --cgroup-parent (cgroupfs driver): /<parent>/<64 hex> at any depth is a docker container", () => {
  assert.deepEqual(parseCgroup(`0::/ci/${ID}\n`).container, { runtime: 'docker', id: ID });
  assert.deepEqual(parseCgroup(v1(`/a/b/${ID}`)).container, { runtime: 'docker', id: ID });
  assert.deepEqual(parseCgroup(`0::/ci/${ID}/init.scope\n`).container, { runtime: 'docker', id: ID });
  // The systemd driver with a parent slice was matched before, by its scope.
  assert.deepEqual(parseCgroup(`0::/ci.slice/docker-${ID}.scope\n`).container, { runtime: 'docker', id: ID });
  // 63 or 65 hex digits are no id, and no host layout either.
  assert.equal(parseCgroup(`0::/ci/${ID.slice(1)}\n`).container, undefined);
  assert.equal(parseCgroup(`0::/ci/${ID}0\n`).container, undefined);
});

test('v1 hierarchies disagreeing: the container is found on whichever line names it', () => {
  const text = `5:cpuset:/\n4:memory:/docker/${ID2}\n1:name=systemd:/system.slice/containerd.service\n0::/\n`;
  assert.deepEqual(parseCgroup(text).container, { runtime: 'docker', id: ID2 });
  assert.equal(parseCgroup(text).path, '/system.slice/containerd.service');
});

test('hostile and malformed input never throws and never invents a container', () => {
  for (const text of ['', '\n\n', 'garbage', '0::', '0::relative/path']) {
    assert.equal(parseCgroup(text).container, null, JSON.stringify(text));
  }
  // Near misses name no container, and are no host layout either: unknown.
  for (const text of ['\0::/docker', `12:memory:/docker/${ID.slice(1)}`, `0::/docker/${ID}x`, `0::/docker/${ID.toUpperCase()}`]) {
    assert.equal(parseCgroup(text).container, undefined, JSON.stringify(text));
  }
  assert.equal(parseCgroup('').path, undefined);
});
