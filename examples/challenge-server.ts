/**
 * Twin of the C library's challenge example, server side: every client must answer a
 * ten-byte challenge with each byte shifted left by one before the application sees it.
 *
 *   node dist/examples/challenge-server.js [socket-path]
 */
import { randomBytes } from 'node:crypto';
import { Policy, createServer, isSecpolicyError, type Decision, type SecpolicyError } from '../src/index.js';

const path = process.argv[2] ?? '/tmp/secpolicy-challenge.sock';

const policy = new Policy().challengeSend(
  () => randomBytes(10),
  (challenge, response) => response.length === challenge.length && challenge.every((b, i) => response[i] === ((b << 1) & 0xff)),
);

const server = createServer({ policy, handshakeTimeout: 2000 }, (socket, peer) => {
  console.log(`allowed pid=${peer.pid} uid=${peer.uid}`);
  // Bytes the client sent after its answer reach us here, in order.
  socket.write('welcome\n');
  socket.pipe(socket);
});
server.on('denied', (why: Decision | SecpolicyError) => {
  if (isSecpolicyError(why)) console.log(`error: ${why.code}: ${why.message}`);
  else console.log(`denied pid=${why.peer.pid}: ${why.failures.map((f) => f.message).join('; ')}`);
});
server.listen(path, () => console.log(`listening on ${path}`));
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => server.close(() => process.exit(0)));
