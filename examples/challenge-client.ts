/**
 * Twin of the C library's challenge example, client side: answers the server's challenge
 * by shifting each byte left by one, then says hello and prints what comes back.
 *
 *   node dist/examples/challenge-client.js [socket-path] [message]
 */
import { Policy, connect, isSecpolicyError } from '../src/index.js';

const path = process.argv[2] ?? '/tmp/secpolicy-challenge.sock';
const message = process.argv[3] ?? 'hello';

const policy = new Policy().challengeReceive((challenge) => challenge.map((b) => (b << 1) & 0xff));

try {
  const socket = await connect({ path, policy, timeout: 2000 });
  socket.end(`${message}\n`);
  socket.setEncoding('utf8');
  for await (const chunk of socket) process.stdout.write(chunk);
} catch (e) {
  console.error(`error: ${isSecpolicyError(e) ? e.code : 'unexpected'}: ${(e as Error).message}`);
  process.exitCode = isSecpolicyError(e) && e.code === 'ERR_SECPOLICY_DENIED' ? 1 : 2;
}
