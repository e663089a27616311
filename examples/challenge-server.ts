/**
 * Twin of the C library's challenge example, server side: every client must answer a
 * ten-byte challenge with each byte shifted left by one.
 *
 *   node dist/examples/challenge-server.js [socket-path]
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Policy, isSecpolicyError } from '../src/index.js';

const path = process.argv[2] ?? '/tmp/secpolicy-challenge.sock';

const policy = new Policy().challengeSend(
  () => randomBytes(10),
  (challenge, response) => response.length === challenge.length && challenge.every((b, i) => response[i] === ((b << 1) & 0xff)),
);

const server = net.createServer(async (socket) => {
  try {
    const decision = await policy.apply(socket, { timeout: 2000 });
    if (!decision.allowed) {
      console.log(`denied pid=${decision.peer.pid}: 0x${decision.result.toString(16)} ${decision.failures.map((f) => f.message).join('; ')}`);
      socket.destroy();
      return;
    }
    console.log(`allowed pid=${decision.peer.pid} uid=${decision.peer.uid}`);
    // Bytes the client sent after its answer reach us here, in order.
    socket.write('welcome\n');
    socket.pipe(socket);
  } catch (e) {
    console.log(`error: ${isSecpolicyError(e) ? e.code : 'unexpected'}: ${(e as Error).message}`);
    socket.destroy();
  }
});
server.listen(path, () => console.log(`listening on ${path}`));
process.on('SIGINT', () => server.close(() => process.exit(0)));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
