/**
 * The memory anchor of the gateway bench: a plain verified HTTP server in a process of its
 * own. secpolicy's createServer verifies each connection (uid rule), then node's HTTP
 * parser serves it with keep-alive, answering every request with `OK` like `/_ping`.
 * It does what the gateway does per connection minus the gateway's own work.
 *
 *   node dist/bench/lib/verified-http.js <socket-path>    (prints "ready" once listening)
 */
import http from 'node:http';
import { once } from 'node:events';
import { Policy, createServer } from '../../src/index.js';
import { isMain } from './stats.js';

async function main(path: string): Promise<void> {
  // Idle keep-alive connections stay until the client closes them, as the gateway's do.
  const web = http.createServer({ keepAliveTimeout: 0 }, (_req, res) => {
    res.setHeader('Content-Type', 'text/plain');
    res.end('OK');
  });
  web.keepAliveTimeout = 0;
  const server = createServer({ policy: new Policy().uid(process.getuid!()) }, (socket) => web.emit('connection', socket));
  server.listen(path);
  await once(server, 'listening');
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

if (isMain(import.meta.url)) await main(process.argv[2]!);
