import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Policy, Result } from '../../src/index.js';
import { listenOn, nextConnection, nodeClient, tempDir, closeServer } from '../helpers/index.js';

test('a peer of the same uid passes a uid policy and fails another', async () => {
  const tmp = tempDir();
  const server = await listenOn(tmp.path('s.sock'), () => {});
  const conn = nextConnection(server);
  const client = nodeClient(tmp.path('s.sock'), { holdMs: 500 });
  const socket = await conn;
  assert.equal((await new Policy().uid(process.getuid!()).apply(socket)).allowed, true);
  const denied = await new Policy().uid(process.getuid!() + 1).apply(socket);
  assert.equal(denied.result, Result.UID);
  socket.destroy();
  await client.output();
  await closeServer(server);
  tmp.cleanup();
});
