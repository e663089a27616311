import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { IMAGE, startDockerd } from '../helpers/dockerd.js';

const daemon = await startDockerd();
after(() => daemon.stop());

test('the test daemon runs a busybox container offline', { skip: daemon.skip }, async () => {
  const r = await daemon.docker(['run', '--rm', '--network', 'none', IMAGE, '/bin/echo', 'hi']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'hi\n');
});

test('stop() with a container still running leaves no process, mount, cgroup or directory behind', { skip: daemon.skip }, async () => {
  const other = await startDockerd();
  assert.equal(other.skip, false);
  const r = await other.docker(['run', '-d', '--network', 'none', IMAGE, 'sleep', '600']);
  assert.equal(r.code, 0, r.stderr);
  const id = r.stdout.trim();
  await other.stop();
  assert.ok(!existsSync(other.dir), `${other.dir} is still there`);
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
  assert.ok(!mounts.includes(other.dir), 'a mount under the daemon directory is left');
  const hierarchies = existsSync('/sys/fs/cgroup/cgroup.controllers') ? [''] : readdirSync('/sys/fs/cgroup').map((h) => `/${h}`);
  for (const h of hierarchies) {
    for (const dir of [`/sys/fs/cgroup${h}/docker/${id}`, `/sys/fs/cgroup${h}/system.slice/docker-${id}.scope`]) {
      assert.ok(!existsSync(dir), `${dir} is left`);
    }
  }
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmdline: string;
    let cgroup: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      cgroup = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    assert.ok(!cmdline.includes(other.dir), `process ${pid} (${cmdline.replace(/\0/g, ' ')}) is left`);
    assert.ok(!cgroup.includes(id), `process ${pid} is left in the container's cgroup`);
  }
});
