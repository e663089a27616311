/**
 * The scan's helper thread reads the fd tables of the processes with odd pids: what it
 * finds there (a holder, a socket that may carry a parked descriptor) reaches the scan's
 * answer as if the scanning thread had read it, and the scan without the helper sees the same.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Peer } from '../../src/identity/peer.js';
import { scanHolders, startWalkHelper, type HolderScan, type WalkHelper, type WalkPart } from '../../src/identity/holders.js';
import { socketInode } from '../../src/native/index.js';
import { needRoot } from '../helpers/index.js';
import { acceptFrom, pythonPeer, reap, socketServer, waitForOutput } from './peers.js';

// The connection only under fd 1001, and a socket with a queued byte only under fd 1003.
const ODD_FDS = `
os.dup2(s.fileno(), 1001)
s.close()
a, b = socket.socketpair()
a.send(b'x')
os.dup2(b.fileno(), 1003)
b.close()
print('ready', flush=True)
sys.stdin.read()
`;

test("the helper thread's half of each fd table reaches the scan", { skip: needRoot() }, async (t) => {
  const helper = startWalkHelper();
  if (helper === undefined) return t.skip('no worker threads here');
  await helper.ready;
  const { path, server } = await socketServer(t);
  // A child with an odd pid: its table is the helper's to read (pids alternate, so few tries do).
  let child = pythonPeer(path, { body: ODD_FDS });
  let socket = await acceptFrom(server, child);
  for (let i = 0; i < 50 && (child.pid! & 1) === 0; i++) {
    await reap(child);
    child = pythonPeer(path, { body: ODD_FDS });
    socket = await acceptFrom(server, child);
  }
  const holder = child;
  t.after(() => reap(holder));
  if ((child.pid! & 1) === 0) return t.skip('no child with an odd pid in 50 tries');
  await waitForOutput(child, 'ready');
  const fd = new Peer(socket).fd();
  const ours = { inode: socketInode(fd)!, fd };

  const seen = (scan: HolderScan) => {
    assert.equal(scan.incomplete, undefined);
    const peerEnd = scan.ends.get(ours.inode)!.peer!;
    assert.ok(peerEnd > 0);
    return {
      holders: scan.holders.get(peerEnd),
      queued: scan.queued.filter((q) => q.holders.some((h) => h.pid === child.pid)).map((q) => q.why),
    };
  };
  // Watches what the helper answers.
  let answered: WalkPart | string | undefined;
  const spy: WalkHelper = {
    ready: helper.ready,
    start: (request) => helper.start(request),
    finish: (deadline) => (answered = helper.finish(deadline)),
  };
  const helped = scanHolders([ours], { budgetMs: 10_000, helper: spy });
  assert.equal(helped.helped, true, 'the helper read half of the tables');
  const part = answered as WalkPart;
  const peerEnd = helped.ends.get(ours.inode)!.peer!;
  const found: number[][] = [];
  for (let i = 0; i < part.holders.length; i += 4) if (part.holders[i] === peerEnd) found.push(part.holders.slice(i + 1, i + 4));
  assert.deepEqual(found, [[child.pid, 1001, 0]], 'the helper, not the scanning thread, found the holder');
  const alone = scanHolders([ours], { budgetMs: 10_000 });
  assert.equal(alone.helped, undefined);
  for (const scan of [helped, alone]) {
    assert.deepEqual(seen(scan), { holders: [{ pid: child.pid, fd: 1001 }], queued: ['1 byte(s) queued to read'] });
  }
});
