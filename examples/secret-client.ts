/**
 * A client that proves it holds the server's key, and checks that the server holds it
 * too, before it sends a byte of its own; then prints the echo.
 *
 *   node dist/examples/secret-client.js <socket-path> <key-file> [message]
 */
import net from 'node:net';
import { once } from 'node:events';
import { Policy, isSecpolicyError } from '../src/index.js';

const [path = '/tmp/secpolicy-secret.sock', keyFile = 'secpolicy.key', message = 'hello'] = process.argv.slice(2);

const policy = new Policy().sharedSecret({ keyFile });

const socket = net.connect(path);
try {
  await once(socket, 'connect');
  const decision = await policy.apply(socket, { timeout: 2000 });
  if (!decision.allowed) {
    console.error(`server refused: ${decision.failures.map((f) => f.message).join('; ')}`);
    process.exit(1);
  }
} catch (e) {
  console.error(`error: ${isSecpolicyError(e) ? e.code : 'unexpected'}: ${(e as Error).message}`);
  process.exit(2);
}
socket.end(`${message}\n`);
socket.setEncoding('utf8');
let received = '';
for await (const chunk of socket) received += chunk;
process.stdout.write(received);
