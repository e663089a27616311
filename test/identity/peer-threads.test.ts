/**
 * Attributes the kernel keeps per thread (no_new_privs, effective capabilities) hold only
 * if they hold for every thread of the peer: a thread started before the process turned
 * no_new_privs on, or one that kept a capability the main thread dropped, can act on the
 * admitted connection with its own privileges. Real python3 peers; the threads are made
 * with `threading`, the per-thread changes with prctl/capset through ctypes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Policy, Result, parsePolicy } from '../../src/index.js';
import { isRoot, needCommand, needRoot, run } from '../helpers/index.js';
import { PY, acceptFrom, reap, socketServer } from './peers.js';

const skipPy = needCommand('python3');
const skipRoot = skipPy || needRoot();
const skipSetpriv = skipRoot || needCommand('setpriv');

// prctl(PR_SET_NO_NEW_PRIVS) on the calling thread only, after a second thread started.
const NNP_AFTER_THREAD = `
import ctypes, threading, time
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
time.sleep(0.05)
assert ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0) == 0
`;

const NNP_BEFORE_THREAD = `
import ctypes, threading, time
assert ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0) == 0
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
`;

/** A python3 peer that runs `setup` (threads, prctl, capset) before it connects. */
async function threadedPeer(t: Parameters<typeof socketServer>[0], setup: string, prefix: string[] = []) {
  const { path, server } = await socketServer(t);
  const script = `${setup}\nimport os,socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(${JSON.stringify(path)})\nprint('up',os.getpid(),flush=True)\nsys.stdin.read()\n`;
  const argv = [...prefix, PY, '-c', script];
  const child = run(argv[0]!, argv.slice(1));
  t.after(() => reap(child));
  const socket = await acceptFrom(server, child);
  return socket;
}

test('noNewPrivs: a thread started before prctl(PR_SET_NO_NEW_PRIVS) keeps NNP=0, so the peer is denied', { skip: skipPy }, async (t) => {
  const socket = await threadedPeer(t, NNP_AFTER_THREAD);
  const d = await new Policy().noNewPrivs().apply(socket);
  assert.equal(d.allowed, false, 'one thread of the peer runs without no_new_privs');
  assert.equal(d.result, Result.NO_NEW_PRIVS);
  assert.match(d.failures[0]!.message, /thread/);
  const peer = d.peer;
  assert.equal(peer.noNewPrivs, false);
  // Sync and async evaluations agree.
  assert.equal(new Policy().noNewPrivs().applySync(socket).allowed, false);
});

test('noNewPrivs: every thread has it (set before the thread started): admitted', { skip: skipPy }, async (t) => {
  const socket = await threadedPeer(t, NNP_BEFORE_THREAD);
  const d = await new Policy().noNewPrivs().apply(socket);
  assert.equal(d.allowed, true, JSON.stringify(d.failures));
  assert.equal(d.peer.noNewPrivs, true);
});

test(
  'capabilities: an unprivileged peer has none; capabilities([]) admits it',
  { skip: skipPy || (isRoot && needCommand('setpriv')) },
  async (t) => {
    // As root the peer drops to nobody; otherwise it is one of our own (unprivileged) processes.
    const prefix = isRoot ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all'] : [];
    const socket = await threadedPeer(t, '', prefix);
    const d = await new Policy().capabilities([]).apply(socket);
    assert.equal(d.allowed, true, JSON.stringify(d.failures));
    assert.deepEqual(d.peer.capabilities, []);
  },
);

test(
  'capabilities: root limited by its bounding set holds exactly those; names match with or without CAP_, any case',
  { skip: skipSetpriv },
  async (t) => {
    const socket = await threadedPeer(t, '', ['setpriv', '--inh-caps=-all', '--bounding-set=-all,+chown,+net_bind_service']);
    assert.deepEqual(new Policy().applySync(socket).peer.capabilities, ['CAP_CHOWN', 'CAP_NET_BIND_SERVICE']);
    for (const allowed of [
      ['chown', 'NET_BIND_SERVICE'],
      ['CAP_CHOWN', 'cap_net_bind_service', 'CAP_KILL'],
    ]) {
      const d = await new Policy().capabilities(allowed).apply(socket);
      assert.equal(d.allowed, true, JSON.stringify(d.failures));
    }
    const d = await new Policy().capabilities('chown').apply(socket);
    assert.equal(d.result, Result.CAPABILITIES);
    assert.deepEqual(d.failures[0]!.actual, ['CAP_NET_BIND_SERVICE']);
    assert.match(d.failures[0]!.message, /CAP_NET_BIND_SERVICE/);
    assert.equal((await new Policy().capabilities([]).apply(socket)).allowed, false);
  },
);

test('capabilities: full root is denied by capabilities([])', { skip: skipRoot }, async (t) => {
  const socket = await threadedPeer(t, '');
  const d = await new Policy().capabilities([]).apply(socket);
  assert.equal(d.result, Result.CAPABILITIES);
  assert.ok((d.peer.capabilities ?? []).includes('CAP_SYS_ADMIN'));
});

// capset(2) changes the calling thread only: the main thread drops every capability, a
// thread started before keeps CAP_CHOWN.
const DROP_IN_MAIN_THREAD = `
import ctypes, threading, time
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
time.sleep(0.05)
class Header(ctypes.Structure):
    _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]
class Data(ctypes.Structure):
    _fields_ = [('effective', ctypes.c_uint32), ('permitted', ctypes.c_uint32), ('inheritable', ctypes.c_uint32)]
h = Header(0x20080522, 0)
d = (Data * 2)()
assert ctypes.CDLL(None, use_errno=True).capset(ctypes.byref(h), d) == 0, ctypes.get_errno()
assert 'CapEff:\\t0000000000000000' in open('/proc/self/status').read()
`;

test('capabilities: a thread that keeps CAP_CHOWN while the main thread dropped everything is denied', { skip: skipSetpriv }, async (t) => {
  const socket = await threadedPeer(t, DROP_IN_MAIN_THREAD, ['setpriv', '--inh-caps=-all', '--bounding-set=-all,+chown']);
  for (const d of [await new Policy().capabilities([]).apply(socket), new Policy().capabilities([]).applySync(socket)]) {
    assert.equal(d.result, Result.CAPABILITIES, 'the second thread still holds CAP_CHOWN');
    assert.deepEqual(d.failures[0]!.actual, ['CAP_CHOWN']);
  }
});

test('capabilities: argument checks and the policy-file key', async () => {
  assert.throws(() => new Policy().capabilities(['no_such_cap']), { code: 'ERR_SECPOLICY_INVALID_ARG' });
  assert.throws(() => new Policy().capabilities(7 as unknown as string), { code: 'ERR_SECPOLICY_INVALID_ARG' });
  const p = parsePolicy('capabilities: [chown, CAP_KILL]\n');
  assert.deepEqual(p.rules[0]!.expected, ['CAP_CHOWN', 'CAP_KILL']);
  assert.deepEqual(parsePolicy('capabilities: []\n').rules[0]!.expected, []);
  assert.throws(() => parsePolicy('capabilities: [nope]\n'), { code: 'ERR_SECPOLICY_POLICY_FILE' });
});
