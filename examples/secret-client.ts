/**
 * A client that proves it holds the server's key, and checks that the server holds it
 * too, before it sends a byte of its own; then prints the echo.
 *
 *   node dist/examples/secret-client.js <socket-path> <key-file> [message]
 */
import { Policy, connect, isSecpolicyError } from '../src/index.js';

const [path = '/tmp/secpolicy-secret.sock', keyFile = 'secpolicy.key', message = 'hello'] = process.argv.slice(2);

const policy = new Policy().sharedSecret({ keyFile });

try {
  const socket = await connect({ path, policy, timeout: 2000 });
  socket.end(`${message}\n`);
  socket.setEncoding('utf8');
  for await (const chunk of socket) process.stdout.write(chunk);
} catch (e) {
  console.error(`error: ${isSecpolicyError(e) ? e.code : 'unexpected'}: ${(e as Error).message}`);
  process.exitCode = isSecpolicyError(e) && e.code === 'ERR_SECPOLICY_DENIED' ? 1 : 2;
}
