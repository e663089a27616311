/**
 * A server that admits only clients holding the same key (the built-in shared-secret
 * challenge), then echoes what they send. Make a key first: `secpolicy keygen <key-file>`.
 *
 *   node dist/examples/secret-server.js <socket-path> <key-file>
 */
import { Policy, createServer, isSecpolicyError, type Decision, type SecpolicyError } from '../src/index.js';

const [path = '/tmp/secpolicy-secret.sock', keyFile = 'secpolicy.key'] = process.argv.slice(2);

const policy = new Policy().sharedSecret({ keyFile });

const server = createServer({ policy, handshakeTimeout: 2000 }, (socket, peer) => {
  console.log(`allowed pid=${peer.pid} uid=${peer.uid}`);
  socket.pipe(socket);
});
server.on('denied', (why: Decision | SecpolicyError) => {
  if (isSecpolicyError(why)) console.log(`error: ${why.code}: ${why.message}`);
  else console.log(`denied pid=${why.peer.pid}: ${why.failures.map((f) => f.message).join('; ')}`);
});
server.listen(path, () => console.log(`listening on ${path}`));
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => server.close(() => process.exit(0)));
