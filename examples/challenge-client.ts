/**
 * Twin of the C library's challenge example, client side: answers the server's challenge
 * by shifting each byte left by one, then says hello and prints what comes back.
 *
 *   node dist/examples/challenge-client.js [socket-path] [message]
 */
import net from 'node:net';
import { once } from 'node:events';
import { Policy } from '../src/index.js';

const path = process.argv[2] ?? '/tmp/secpolicy-challenge.sock';
const message = process.argv[3] ?? 'hello';

const policy = new Policy().challengeReceive((challenge) => challenge.map((b) => (b << 1) & 0xff));

const socket = net.connect(path);
await once(socket, 'connect');
const decision = await policy.apply(socket, { timeout: 2000 });
if (!decision.allowed) {
  console.error(`server refused: ${decision.failures.map((f) => f.message).join('; ')}`);
  process.exit(1);
}
socket.end(`${message}\n`);
socket.setEncoding('utf8');
let received = '';
for await (const chunk of socket) received += chunk;
process.stdout.write(received);
