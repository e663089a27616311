/**
 * A client that checks who it talks to before sending a byte: connect() verifies the
 * server (root, or the user running the client) and only then is the HTTP request sent
 * over the verified socket. A server squatting the path as another user is refused.
 *
 *   node dist/examples/client.js [socket-path]
 */
import http from 'node:http';
import { ErrorCode, Policy, connect, isSecpolicyError, peerOf } from '../src/index.js';

const path = process.argv[2] ?? '/tmp/secpolicy-example/api.sock';
const policy = new Policy().uid([...new Set([0, process.getuid!()])]);

try {
  const socket = await connect({ path, policy, timeout: 2000 });
  const server = peerOf(socket)!;
  console.log(`server verified: pid ${server.pid}, uid ${server.uid} (${server.user}), ${server.program}`);
  const req = http.get({ path: '/whoami', createConnection: () => socket }, async (res) => {
    let body = '';
    for await (const chunk of res) body += chunk;
    console.log(`${res.statusCode} ${body.trim()}`);
  });
  req.on('error', (e) => {
    console.error(`request failed: ${e.message}`);
    process.exitCode = 2;
  });
} catch (e) {
  if (isSecpolicyError(e) && e.code === ErrorCode.DENIED) {
    console.error(`refusing to talk to ${path}: ${e.message}`);
    process.exitCode = 1;
  } else {
    console.error(isSecpolicyError(e) ? `${e.code}: ${e.message}` : e);
    process.exitCode = 2;
  }
}
