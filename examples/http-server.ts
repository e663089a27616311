/**
 * An HTTP API on a UNIX socket. listen() makes the socket file (exact mode, no umask
 * window, a squatted or symlinked path refused); guard() admits only the allowed users
 * before http parses a byte; the handler answers with the verified peer.
 *
 *   node dist/examples/http-server.js [socket-path]
 *   curl --unix-socket /tmp/secpolicy-example/api.sock http://localhost/whoami
 *
 * Allowed: root and the user running the server. Anyone may open the socket (mode 0666)
 * so that you can watch another user being turned away:
 *   setpriv --reuid nobody --regid nogroup --clear-groups curl --unix-socket ... (empty reply)
 */
import { mkdirSync } from 'node:fs';
import http from 'node:http';
import { dirname } from 'node:path';
import { Policy, guard, isSecpolicyError, listen, peerOf, type Decision } from '../src/index.js';

const path = process.argv[2] ?? '/tmp/secpolicy-example/api.sock';
const policy = new Policy().uid([...new Set([0, process.getuid!()])]);

const server = http.createServer((req, res) => {
  const peer = peerOf(req.socket)!;
  if (req.method === 'GET' && req.url === '/whoami') {
    res.setHeader('content-type', 'application/json');
    res.end(`${JSON.stringify(peer)}\n`);
    return;
  }
  res.statusCode = 404;
  res.end();
});
guard(server, policy);
server.on('denied', (reason: Decision | Error) => {
  if (isSecpolicyError(reason)) console.log(`refused: ${reason.code} ${reason.message}`);
  else
    console.log(
      `denied uid=${(reason as Decision).peer.uid} pid=${(reason as Decision).peer.pid}: ${(reason as Decision).failures.map((f) => f.message).join('; ')}`,
    );
});

mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
try {
  await listen(server, path, { mode: 0o666 });
} catch (e) {
  console.error(isSecpolicyError(e) ? `${e.code}: ${e.message}` : e);
  process.exit(2);
}
console.log(`listening on ${path}`);
const stop = () => server.close(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
