/**
 * Another platform cannot exist on this machine, so the child process below pretends to be
 * one (process.platform is overridden before the package loads): the first call must fail
 * with ERR_SECPOLICY_UNSUPPORTED_PLATFORM, never crash or allow.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { run } from '../helpers/index.js';

const entry = fileURLToPath(new URL('../../src/index.js', import.meta.url));

test('on a platform other than Linux, apply() and applySync() fail with ERR_SECPOLICY_UNSUPPORTED_PLATFORM', async () => {
  const script = `
    Object.defineProperty(process, 'platform', { value: 'darwin' });
    const net = await import('node:net');
    const { Policy } = await import(${JSON.stringify(entry)});
    const server = net.createServer().listen('\\0secpolicy-platform-' + process.pid);
    await new Promise((r) => server.once('listening', r));
    const client = net.connect('\\0secpolicy-platform-' + process.pid);
    const [socket] = await new Promise((r) => server.once('connection', (...a) => r(a)));
    const codes = [];
    try { new Policy().uid(0).applySync(socket); codes.push('allowed'); } catch (e) { codes.push(e.code); }
    await new Policy().uid(0).apply(socket).then(() => codes.push('allowed'), (e) => codes.push(e.code));
    console.log(JSON.stringify(codes));
    client.destroy(); socket.destroy(); server.close();`;
  const out = await run(process.execPath, ['--input-type=module', '-e', script]).output();
  assert.equal(out.code, 0, out.stderr);
  assert.deepEqual(JSON.parse(out.stdout), ['ERR_SECPOLICY_UNSUPPORTED_PLATFORM', 'ERR_SECPOLICY_UNSUPPORTED_PLATFORM']);
});
