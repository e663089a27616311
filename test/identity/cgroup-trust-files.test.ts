/**
 * Who may move a process into a cgroup is decided by the files that move processes
 * (`cgroup.procs`, v1's `tasks`, v2's `cgroup.threads`), not by the directory: a
 * root-owned `system.slice/<name>.service` whose `cgroup.procs` was handed to a user
 * (libcgroup's `task { uid }` does this) lets that user put itself in the unit. The
 * identities read from the cgroup must then be unknown.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Policy, parsePolicy, type Decision } from '../../src/index.js';
import { cgroupTrust } from '../../src/identity/cgroup-trust.js';
import { Cgroups, hierarchies, needCgroups } from '../helpers/cgroups.js';
import { asUser, run, type RunAs } from '../helpers/index.js';
import { PY, acceptFrom, connectScript, reap, socketServer, waitForOutput } from './peers.js';

const USER: RunAs = { uid: 1000, gid: 1000 };

const notPassing = (d: Decision, what: string) => assert.equal(d.allowed, false, `${what} must not pass: ${JSON.stringify(d.failures)}`);

test(
  'a user given cgroup.procs (and tasks) of a root-owned system.slice/<name>.service moves itself in: its unit is unknown, never that unit',
  { skip: needCgroups() },
  async (t) => {
    const { path, server } = await socketServer(t, 'secpolicy-trust-files-');
    const name = `secpolicy-${process.pid}-${randomBytes(3).toString('hex')}-docker.service`;
    const rel = `system.slice/${name}`;
    const cgroups = new Cgroups().make(rel);
    // The directories stay root's; only the files that move processes are the user's.
    for (const dir of cgroups.dirs(rel)) {
      for (const f of ['cgroup.procs', 'tasks']) if (existsSync(join(dir, f))) chownSync(join(dir, f), USER.uid, USER.gid);
    }
    // The peer, as uid 1000, moves itself where the kernel lets it (cgroup v1, where the
    // target's file decides; cgroup v2 also asks for the common ancestor's, which stays root's).
    const move = `import os\nfor d in ${JSON.stringify(cgroups.dirs(rel))}:\n  try:\n    open(d+'/cgroup.procs','w').write(str(os.getpid()))\n    print('moved', d, flush=True)\n  except OSError as e:\n    print('denied', d, e.errno, flush=True)\nprint('done', flush=True)\n`;
    const [cmd, argv] = asUser(USER, PY, ['-c', `${move}${connectScript(path)}`]);
    const child = run(cmd, argv);
    t.after(async () => {
      await reap(child);
      cgroups.remove();
    });
    // Listening from the start: the lines before `up` would go to the child's own collector.
    const printed = waitForOutput(child, 'up ');
    const socket = await acceptFrom(server, child);
    const out = await printed;
    // Where the user could not move itself (v2), root puts it there: the files decide either way.
    const denied = [...out.matchAll(/^denied (\S+)/gm)].map((m) => m[1]!);
    const moved = [...out.matchAll(/^moved (\S+)/gm)].map((m) => m[1]!);
    // On v1 the kernel lets the user in on the strength of the file alone: the attack is real.
    const v1 = hierarchies().find((h) => h.key === 'name=systemd');
    if (v1) assert.ok(moved.includes(join(v1.mountpoint, rel)), `uid 1000 moved itself into the v1 unit: ${out}`);
    else t.diagnostic('no v1 name=systemd hierarchy here: the user could not move itself, root placed it');
    for (const d of denied) cgroups.move(child.pid!, d.slice(d.indexOf('/system.slice/') + 1));
    for (const d of denied) assert.ok(!moved.includes(d));

    const unit = new Policy().unit(name).applySync(socket);
    notPassing(unit, 'unit');
    assert.ok(
      unit.failures.some((f) => f.unknown === true && /cgroup\.procs|tasks/.test(f.message)),
      JSON.stringify(unit.failures),
    );
    notPassing(parsePolicy({ not: { unit: 'sshd.service' } }).applySync(socket), 'not: { unit: sshd.service }');
    notPassing(parsePolicy('not: { container: true }').applySync(socket), 'not: { container: true }');
  },
);

test(
  'cgroupTrust: a cgroup whose cgroup.procs, tasks or cgroup.threads another uid (or everyone, or a group) may write is not trusted',
  { skip: needCgroups() },
  (t) => {
    let checked = 0;
    for (const h of hierarchies()) {
      const cgroups = new Cgroups([h.mountpoint]);
      t.after(() => cgroups.remove());
      for (const file of ['cgroup.procs', 'tasks', 'cgroup.threads']) {
        for (const how of ['owner', 'other', 'group'] as const) {
          // A path of its own each time: trust is cached per path for a second.
          const rel = `secpolicy-files-${process.pid}-${file}-${how}`;
          const target = join(h.mountpoint, rel, file);
          cgroups.make(rel);
          if (!existsSync(target)) continue;
          assert.equal(cgroupTrust(h.key, `/${rel}/`.slice(0, -1)).trusted, true, `root's own ${target}`);
          const other = `${rel}-b`;
          const file2 = join(h.mountpoint, other, file);
          cgroups.make(other);
          if (how === 'owner') chownSync(file2, USER.uid, USER.gid);
          else if (how === 'other') chmodSync(file2, 0o666);
          else {
            chownSync(file2, 0, USER.gid);
            chmodSync(file2, 0o664);
          }
          const after = cgroupTrust(h.key, `/${other}`);
          assert.equal(after.trusted, false, `${how} of ${file2}`);
          assert.match((after as { reason: string }).reason, new RegExp(file.replace('.', '\\.')));
          checked++;
        }
      }
    }
    assert.ok(checked >= 6, `checked ${checked} files`);
  },
);
