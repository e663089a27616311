/**
 * Policy files on the accept path: a policy loaded from a file must decide exactly as fast
 * as the same policy built in code (it is made of the same Rule objects), and parsing a
 * file is a one-off cost set beside building the policy in code. Same run, same
 * connection, rounds alternating between the two.
 *
 *   node dist/bench/policy-file.js
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { groupName } from '../src/native/index.js';
import { Policy, loadPolicy, parsePolicy } from '../src/index.js';
import { isMain, report, rounds, timePerOp, timePerOpAsync } from './lib/stats.js';

const ROUNDS = 15;
// Each apply pins the peer until its connection closes (a pidfd and a 'close' listener
// per Peer), so every round of applies gets a fresh connection.
const APPLY_ITERATIONS = 500;
const PARSE_ITERATIONS = 500;

/** Runs the benchmark and prints two lines, each against its builder anchor. */
export async function run(): Promise<void> {
  const uid = process.getuid!();
  const group = groupName(process.getgid!())!;
  // The peer is this process: the second alternative holds, after the first one failed.
  const text = `# not root, then our group running node
anyOf:
  - uid: ${uid + 1}
  - memberOf: ${group}
    program: ${process.execPath}
`;
  const build = () => new Policy().anyOf(new Policy().uid(uid + 1), new Policy().memberOf(group).program(process.execPath));
  const fromFile = parsePolicy(text);
  const fromCode = build();

  const dir = mkdtempSync(join(tmpdir(), 'secpolicy-bench-file-'));
  const path = join(dir, 's.sock');
  const server = net.createServer();
  server.listen(path);
  await once(server, 'listening');
  /** Times `iterations` applies of `policy` on a fresh connection, closed afterwards. */
  const timeApply = async (policy: Policy): Promise<number> => {
    const accepted = once(server, 'connection');
    const client = net.connect(path);
    const [socket] = (await accepted) as [net.Socket];
    socket.setMaxListeners(APPLY_ITERATIONS + 10);
    try {
      if (!policy.applySync(socket).allowed) throw new Error('the bench peer should be allowed');
      return timePerOp(APPLY_ITERATIONS, () => policy.applySync(socket));
    } finally {
      client.destroy();
      socket.destroy();
    }
  };
  try {
    const file: number[] = [];
    const code: number[] = [];
    // Alternating rounds: machine noise falls on both alike.
    await rounds(ROUNDS, async () => {
      file.push(await timeApply(fromFile));
      code.push(await timeApply(fromCode));
      return 0;
    });
    report('applySync, policy from a file', file.slice(-ROUNDS), { name: 'the same policy built in code', samples: code.slice(-ROUNDS) });

    const parse = await rounds(ROUNDS, () => timePerOp(PARSE_ITERATIONS, () => parsePolicy(text)));
    const builder = await rounds(ROUNDS, () => timePerOp(PARSE_ITERATIONS, build));
    report('parsePolicy (YAML, 5 lines)', parse, { name: 'building it in code', samples: builder });

    // loadPolicy's file checks (directories walked, O_NOFOLLOW, fstat, size) beside parsing the same text.
    const policyFile = join(dir, 'peers.yaml');
    writeFileSync(policyFile, text, { mode: 0o644 });
    const load = await rounds(ROUNDS, () => timePerOpAsync(PARSE_ITERATIONS / 5, () => loadPolicy(policyFile)));
    const parseOnly = await rounds(ROUNDS, () => timePerOp(PARSE_ITERATIONS / 5, () => parsePolicy(text)));
    report('loadPolicy (file checks, read, parse)', load, { name: 'parsePolicy of the same text', samples: parseOnly });
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) await run();
