import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';

// The repository root: this file runs as dist/test/structure/rooms.test.js.
const root = fileURLToPath(new URL('../../../', import.meta.url));

/** The room-order findings ESLint reports for `code` placed at `file` (a path under src/). */
async function roomFindings(file: string, code: string): Promise<string[]> {
  const eslint = new ESLint({ cwd: root });
  const [result] = await eslint.lintText(code, { filePath: `${root}${file}` });
  return result!.messages.filter((m) => m.ruleId === 'boundaries/dependencies').map((m) => m.message);
}

test('a room may import a lower room through its front door', async () => {
  assert.deepEqual(await roomFindings('src/net/probe.ts', "export { Policy } from '../policy/index.js';\n"), []);
  assert.deepEqual(await roomFindings('src/gateway/probe.ts', "export { Peer } from '../identity/index.js';\n"), []);
});

test('a room may not import past a lower room’s front door', async () => {
  const found = await roomFindings('src/net/probe.ts', "export { Peer } from '../identity/peer.js';\n");
  assert.equal(found.length, 1, found.join('\n'));
  assert.match(found[0]!, /through their index\.ts/);
});

test('a room may not import from a room above it or beside it', async () => {
  assert.equal((await roomFindings('src/native/probe.ts', "export { Policy } from '../policy/index.js';\n")).length, 1);
  assert.equal((await roomFindings('src/identity/probe.ts', "export { createServer } from '../net/index.js';\n")).length, 1);
  assert.equal((await roomFindings('src/proxy/probe.ts', "export { createGateway } from '../gateway/index.js';\n")).length, 1);
});

test('the source tree itself keeps the room order', async () => {
  const eslint = new ESLint({ cwd: root });
  const results = await eslint.lintFiles(['src/**/*.ts']);
  const found = results.flatMap((r) =>
    r.messages.filter((m) => m.ruleId === 'boundaries/dependencies').map((m) => `${r.filePath}:${m.line}: ${m.message}`),
  );
  assert.deepEqual(found, []);
});
