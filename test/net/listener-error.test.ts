/**
 * An exception thrown by the application's own connection listener is the application's
 * error: it reaches 'uncaughtException' as it does with a plain net.Server, and the peer
 * (which was allowed) is not reported as denied. Each server runs in its own process,
 * the client in another.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { nodeClient, run, tempDir } from '../helpers/index.js';

const INDEX = fileURLToPath(new URL('../../src/index.js', import.meta.url));

/** argv: path, index, kind (plain | sync | async | guard). Prints what happened, one line each, and exits after the first uncaught error. */
const SERVER = `
import net from 'node:net';
const [path, index, kind] = process.argv.slice(1);
const { Policy, createServer, guard } = await import(index);
const boom = () => { throw new Error('listener boom'); };
process.on('uncaughtException', (e) => { console.log('uncaught: ' + e.message); process.exit(0); });
process.on('unhandledRejection', (e) => { console.log('unhandled rejection: ' + e.message); process.exit(0); });
let server;
if (kind === 'plain') server = net.createServer(boom);
else if (kind === 'sync') server = createServer({ policy: new Policy().uid(process.getuid()) }, boom);
else if (kind === 'async') server = createServer({ policy: new Policy().callback(async () => true) }, boom);
else server = guard(net.createServer(boom), new Policy().uid(process.getuid()));
server.on('denied', (why) => { console.log('denied: ' + (why.message ?? JSON.stringify(why.failures))); process.exit(0); });
server.listen(path, () => console.log('listening'));
`;

for (const kind of ['plain', 'sync', 'async', 'guard'] as const) {
  test(`a throwing connection listener (${kind === 'plain' ? 'plain net.Server, the reference' : kind}) reaches uncaughtException, not 'denied'`, async (t) => {
    const dir = tempDir('secpolicy-listener-');
    t.after(dir.cleanup);
    const path = dir.path('s');
    const server = run(process.execPath, ['--input-type=module', '-e', SERVER, path, INDEX, kind]);
    t.after(() => server.kill('SIGKILL'));
    await new Promise<void>((resolve, reject) => {
      server.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && resolve());
      server.once('exit', () => reject(new Error('the server exited before listening')));
    });
    const client = nodeClient(path, { holdMs: 100 });
    const out = await server.output();
    await client.output();
    assert.equal(out.stdout, 'listening\nuncaught: listener boom\n', out.stderr);
  });
}
