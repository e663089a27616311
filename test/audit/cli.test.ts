import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import type { SocketReport } from '../../src/index.js';
import { needRoot, run, tempDir } from '../helpers/index.js';
import { holdSockets } from './holder.js';
import { progress } from '../../src/cli/commands/audit.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const audit = (...args: string[]) => run(process.execPath, [CLI, 'audit', ...args], { env: { ...process.env, NO_COLOR: '1' } }).output();

test('secpolicy audit: JSON as docs/cli.md describes it, an 80-column table, and --fail-on', { skip: needRoot() }, async (t) => {
  const tmp = tempDir('secpolicy-audit-cli-');
  t.after(() => tmp.cleanup());
  // Held by root and open to every user: a high finding (ROOT_WORLD_ACCESSIBLE).
  const path = tmp.path('a-socket-with-a-long-name-to-wrap.sock');
  const held = await holdSockets([{ address: path, mode: 0o666 }]);
  t.after(held.stop);

  const asJson = await audit('--json');
  assert.equal(asJson.code, 0, asJson.stderr);
  const reports = JSON.parse(asJson.stdout) as SocketReport[];
  assert.ok(Array.isArray(reports));
  const mine = reports.find((r) => r.path === path);
  assert.ok(mine, 'the held socket is listed');
  assert.equal(mine.abstract, false);
  assert.deepEqual(mine.pids, [held.pid]);
  assert.deepEqual(mine.findings.map((f) => f.code).sort(), ['ROOT_WORLD_ACCESSIBLE', 'WORLD_WRITABLE']);
  for (const f of mine.findings) assert.deepEqual(Object.keys(f).sort(), ['code', 'message', 'severity']);

  // The table of this socket alone: a socket elsewhere on the host with a name too long for
  // 80 columns widens the table rather than being cut (served.test.ts), which is not this test.
  // Other tests run beside this one and make sockets of their own between two listings: the
  // others are listed again until one table shows this socket alone (a few tries at most).
  let human: Awaited<ReturnType<typeof audit>> | undefined;
  for (let attempt = 0; attempt < 5; attempt++) {
    const listed = JSON.parse((await audit('--json')).stdout) as SocketReport[];
    const others = listed.filter((r) => r.path !== path).flatMap((r) => ['--ignore', r.path]);
    human = await audit(...others);
    if (/^1 listening socket(?: \(\d+ ignored\))?; /m.test(human.stdout)) break;
  }
  assert.ok(human);
  assert.equal(human.code, 0, human.stderr);
  assert.equal(human.stderr, '', 'no progress line when stderr is not a terminal');
  const lines = human.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^SEVERITY\s+PATH\s+MODE\s+HOLDER$/);
  assert.ok(
    lines.some((l) => /^SEVERITY\s+CODE\s+SOCKET AND FINDING$/.test(l)),
    'a table of findings follows',
  );
  for (const line of lines) assert.ok(line.length <= 80, `at most 80 columns: ${JSON.stringify(line)}`);
  assert.ok(!human.stdout.includes('\x1b['), 'NO_COLOR: no escape codes');
  assert.match(human.stdout, /ROOT_WORLD_ACCESSIBLE/);
  assert.match(lines[lines.length - 1]!, /^1 listening socket(?: \(\d+ ignored\))?; /);

  assert.equal((await audit('--fail-on', 'high')).code, 1);
  assert.equal((await audit('--fail-on', 'critical')).code, 0, 'no finding is critical');
  const bad = await audit('--fail-on', 'severe');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^secpolicy: ERR_SECPOLICY_INVALID_ARG: .*severe.*\n$/);
});

test('secpolicy audit --help names its options', async () => {
  const help = await audit('--help');
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--json/);
  assert.match(help.stdout, /--fail-on <severity>/);
});

test('the progress line: only on a terminal, only once the scan takes a while, cleared at the end', async () => {
  assert.equal(progress({ isTTY: false, write: () => true }), undefined);
  const written: string[] = [];
  const report = progress({ isTTY: true, write: (t: string) => written.push(t) })!;
  report(64, 500);
  assert.deepEqual(written, [], 'a quick scan shows nothing');
  await new Promise((resolve) => setTimeout(resolve, 350));
  report(128, 500);
  assert.deepEqual(written, ['\r\x1b[Kscanning /proc: 128/500 processes']);
  report(500, 500);
  assert.equal(written[1], '\r\x1b[K', 'the line is cleared when done');
});
