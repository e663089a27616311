/**
 * A request whose bytes turn bad after its answer began: nothing may follow that answer's
 * head on the connection but its own body, so the gateway closes the connection instead of
 * writing its 400 into the middle of it. Before any answer began, the 400 is written. A
 * real upstream HTTP server answers at once, before the request's body has ended.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { closeGateway, createGateway, parseGatewayPolicy } from '../../src/index.js';
import { closeServer, tempDir } from '../helpers/index.js';

const POLICY = { version: 1, rules: [{ name: 'me', who: { uid: process.getuid!() }, allow: ['* /**'] }] };

/** A gateway in front of an upstream that answers `/stream` at once with a head and a first chunk, and never ends it. */
async function fixture(t: test.TestContext) {
  const tmp = tempDir('secpolicy-client-error-');
  t.after(() => tmp.cleanup());
  const up = http.createServer((req, res) => {
    req.resume();
    if (req.url !== '/stream') return void req.on('end', () => res.end('done'));
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.write('first');
  });
  up.listen(tmp.path('up.sock'));
  await once(up, 'listening');
  t.after(() => {
    up.closeAllConnections();
    return closeServer(up);
  });
  const server = await createGateway({ listen: tmp.path('gw.sock'), target: tmp.path('up.sock'), policy: parseGatewayPolicy(POLICY) });
  t.after(() => closeGateway(server, { grace: 0 }));
  return tmp.path('gw.sock');
}

/** Sends `first`, waits until `until` has been received, sends `then`, and resolves with everything received until the gateway closes. */
async function exchange(path: string, first: string, until: RegExp, then: string): Promise<string> {
  const s = net.connect(path);
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString('latin1')));
  await once(s, 'connect');
  s.write(first);
  while (!until.test(text)) await once(s, 'data');
  s.write(then);
  await once(s, 'close');
  return text;
}

const CHUNKED = 'POST /stream HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n';

test('a body that turns bad after its answer began: the connection is closed, no 400 is written into that answer', async (t) => {
  const path = await fixture(t);
  // The answer's head and first chunk have arrived; then a chunk size that is not hex.
  const text = await exchange(path, CHUNKED, /first/, 'zz\r\n');
  assert.match(text, /^HTTP\/1\.1 200 /);
  assert.equal(text.match(/HTTP\/1\.1 /g)?.length, 1, `one answer only: ${JSON.stringify(text)}`);
  assert.doesNotMatch(text, /400|bad request/i);
});

test('a request that turns bad before any answer began gets the 400', async (t) => {
  const path = await fixture(t);
  // A whole request answered, then a request line that is not HTTP.
  const first = 'GET /done HTTP/1.1\r\nHost: docker\r\n\r\n';
  const text = await exchange(path, first, /done$/, 'NOT HTTP\r\n\r\n');
  assert.match(text, /^HTTP\/1\.1 200 /);
  assert.match(text, /HTTP\/1\.1 400 Bad Request\r\n[\s\S]*not valid HTTP\/1\.1/);
});
