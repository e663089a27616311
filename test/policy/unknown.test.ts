/**
 * Unknown never allows: a rule whose attribute cannot be read (the connector exited while
 * a child keeps the socket, or is an unreaped zombie) is unknown, and not / anyOf / allOf /
 * policy files keep it unknown. The peers are real processes in a real cgroup named like a
 * docker container (root-owned, so its name counts).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Policy, parsePolicy, type Decision, type Peer } from '../../src/index.js';
import { allOf, anyOf, not } from '../../src/policy/combinators.js';
import { PASS, fail, unknown, type Check, type Rule } from '../../src/policy/rule.js';
import { Cgroups, needCgroups } from '../helpers/cgroups.js';
import { run } from '../helpers/index.js';
import { PY, acceptFrom, socketServer, waitForOutput } from '../identity/peers.js';

const plain = (name: string, r: Check): Rule => ({ name, flag: 1, expected: name, check: () => r });
const T = plain('t', PASS);
const F = plain('f', fail(1, 'false'));
const U = plain('u', unknown('cannot read'));
const verdict = (rule: Rule): 'pass' | 'fail' | 'unknown' => {
  const r = rule.check({} as Peer, { strict: false }) as Check;
  return r.pass ? 'pass' : r.unknown ? 'unknown' : 'fail';
};

test('three-valued combinators on plain rules: not(unknown), anyOf and allOf never turn unknown into a pass', () => {
  assert.equal(verdict(not(U)), 'unknown');
  assert.equal(verdict(not(T)), 'fail');
  assert.equal(verdict(not(F)), 'pass');
  assert.equal(verdict(anyOf([U, F])), 'unknown');
  assert.equal(verdict(anyOf([U, T])), 'pass');
  assert.equal(verdict(anyOf([F, F])), 'fail');
  assert.equal(verdict(allOf([U, T])), 'unknown');
  assert.equal(verdict(allOf([U, F])), 'fail');
  assert.equal(verdict(not(allOf([U, T]))), 'unknown');
  assert.equal(verdict(not(anyOf([U, F]))), 'unknown');
  assert.equal(verdict(not(not(U))), 'unknown');
  const r = not(U).check({} as Peer, { strict: false }) as Check & { pass: false };
  assert.match(r.message, /^unknown: /);
});

type Mode = 'exit' | 'zombie';

/**
 * A peer in cgroup `rel` whose connector is gone: `exit` (reaped, a child keeps the
 * socket) or `zombie` (exited, its parent does not wait). Prints `gone <connector> <holder>`.
 */
function leavingPeer(path: string, cgroups: Cgroups, rel: string, mode: Mode) {
  const py = `
import os,socket,sys,time
def connector():
    s=socket.socket(socket.AF_UNIX); s.connect(${JSON.stringify(path)})
    r,w=os.pipe()
    holder=os.fork()
    if holder==0:
        os.close(r); os.write(w,b'x'); sys.stdin.read(); os._exit(0)
    os.read(r,1)
    return holder
def state(pid):
    with open('/proc/%d/stat'%pid) as f: return f.read().rsplit(')',1)[1].split()[0]
if ${JSON.stringify(mode)}=='exit':
    holder=connector()
    print('gone',os.getpid(),holder,flush=True)
    os._exit(0)
r,w=os.pipe()
c=os.fork()
if c==0:
    holder=connector(); os.write(w,str(holder).encode()); os._exit(0)
holder=int(os.read(r,32))
while state(c)!='Z': time.sleep(0.005)
print('gone',c,holder,flush=True)
sys.stdin.read()
`;
  return run('sh', ['-c', `${cgroups.enter(rel)} && exec ${PY} -c "$0"`, py]);
}

const deniedAsUnknown = (d: Decision, what: string): void => {
  assert.equal(d.allowed, false, `${what}: ${JSON.stringify(d.failures)}`);
  assert.ok(
    d.failures.some((f) => f.unknown === true && /^unknown: /.test(f.message)),
    `${what}: ${JSON.stringify(d.failures)}`,
  );
};

for (const mode of ['exit', 'zombie'] as const) {
  test(
    `a container process whose connector ${mode === 'exit' ? 'exited (a child keeps the socket)' : 'is an unreaped zombie'} passes neither container nor not container`,
    { skip: needCgroups() },
    async (t) => {
      const { path, server } = await socketServer(t);
      const cgroups = new Cgroups();
      const rel = `docker/${randomBytes(32).toString('hex')}`;
      cgroups.make(rel);
      const child = leavingPeer(path, cgroups, rel, mode);
      let holder = 0;
      t.after(async () => {
        if (holder) process.kill(holder, 'SIGKILL');
        child.kill('SIGKILL');
        await child.output();
        // The holder, orphaned, is reaped by init: wait for its cgroup to empty.
        for (let i = 0; i < 200 && cgroups.dirs(rel).some((d) => hasProcs(d)); i++) await new Promise((r) => setTimeout(r, 10));
        cgroups.remove();
      });
      const socket = await acceptFrom(server, child);
      const [, connector, held] = (await waitForOutput(child, '\n')).trim().split(' ').map(Number);
      holder = held!;
      if (mode === 'exit') await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
      assert.equal(new Policy().uid(0).applySync(socket).peer.pid, connector, 'the peer is the connector, not its child');

      deniedAsUnknown(new Policy().not(new Policy().container()).applySync(socket), 'not container');
      deniedAsUnknown(new Policy().container().applySync(socket), 'container');
      deniedAsUnknown(new Policy().anyOf(new Policy().not(new Policy().container()), new Policy().uid(4242)).applySync(socket), 'anyOf');
      deniedAsUnknown(new Policy().allOf(new Policy().not(new Policy().container()), new Policy().uid(0)).applySync(socket), 'allOf');
      deniedAsUnknown(new Policy().not(new Policy().program(PY)).applySync(socket), 'not program');
      for (const doc of [
        'not: { container: true }',
        'anyOf: [{ not: { container: true } }, { uid: 4242 }]',
        'not: { anyOf: [{ container: true }, { uid: 4242 }] }',
      ]) {
        deniedAsUnknown(parsePolicy(doc).applySync(socket), doc);
      }
      // Read again later: the peer is gone, so no attribute of another or a dying process is shown.
      const peer = new Policy().uid(0).applySync(socket).peer;
      assert.equal(peer.container, undefined);
      assert.equal(peer.program, undefined);
      assert.equal(peer.namespaces, undefined);
      assert.match(peer.reason('container') ?? '', /exited/);
    },
  );
}

function hasProcs(dir: string): boolean {
  try {
    return readFileSync(`${dir}/cgroup.procs`, 'utf8').trim() !== '';
  } catch {
    return false;
  }
}
