/**
 * A server that admits only clients holding the same key (the built-in shared-secret
 * challenge), then echoes what they send. Make a key first: `secpolicy keygen key`.
 *
 *   node dist/examples/secret-server.js <socket-path> <key-file>
 */
import net from 'node:net';
import { Policy, isSecpolicyError } from '../src/index.js';

const [path = '/tmp/secpolicy-secret.sock', keyFile = 'secpolicy.key'] = process.argv.slice(2);

const policy = new Policy().sharedSecret({ keyFile });

const server = net.createServer(async (socket) => {
  try {
    const decision = await policy.apply(socket, { timeout: 2000 });
    if (!decision.allowed) {
      console.log(`denied pid=${decision.peer.pid}: ${decision.failures.map((f) => f.message).join('; ')}`);
      socket.destroy();
      return;
    }
    console.log(`allowed pid=${decision.peer.pid} uid=${decision.peer.uid}`);
    socket.pipe(socket);
  } catch (e) {
    console.log(`error: ${isSecpolicyError(e) ? e.code : 'unexpected'}: ${(e as Error).message}`);
    socket.destroy();
  }
});
server.listen(path, () => console.log(`listening on ${path}`));
process.on('SIGINT', () => server.close(() => process.exit(0)));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
