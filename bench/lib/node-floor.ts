/**
 * The Node.js floors of the gateway bench: the least a proxy written for Node.js does per
 * request, with none of the gateway's work (no verification, no policy, no log, no
 * identity headers), in a process of its own in front of the same dockerd.
 *
 *   relay  a byte relay: each accepted connection gets its own upstream connection and
 *          the two are piped both ways (no HTTP parsing at all). No Node.js proxy that
 *          reads requests can cost less per byte relayed.
 *   http   an HTTP proxy: node's http server, each request forwarded with http.request
 *          through a keep-alive Agent (upstream connections reused, as the gateway and
 *          HAProxy with upstream keep-alive do), the answer piped back.
 *
 * With workers > 1, that many cluster workers serve, each accepting from the one listening
 * socket itself (no handle passing per connection), as the gateway's `--workers` do.
 *
 *   node dist/bench/lib/node-floor.js <relay|http> <listen> <upstream> [workers]
 *   (prints "ready" once every process listens)
 */
import cluster from 'node:cluster';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { isMain } from './stats.js';

function relay(upstream: string): net.Server {
  return net.createServer((client) => {
    const up = net.connect(upstream);
    client.pipe(up).on('error', () => client.destroy());
    up.pipe(client).on('error', () => up.destroy());
    client.on('error', () => up.destroy());
    up.on('error', () => client.destroy());
    client.on('close', () => up.destroy());
    up.on('close', () => client.destroy());
  });
}

function httpProxy(upstream: string): http.Server {
  const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 256 });
  const server = http.createServer((req, res) => {
    const out = http.request({ socketPath: upstream, agent, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode!, answer.rawHeaders);
      answer.pipe(res);
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  server.keepAliveTimeout = 0;
  return server;
}

async function main(mode: string, listen: string, upstream: string, workers: number): Promise<void> {
  if (cluster.isPrimary) rmSync(listen, { force: true });
  if (cluster.isPrimary && workers > 1) {
    // The workers serve; the cluster primary binds the socket once and hands the listening
    // socket to each, which accepts from it itself (no handle passing per connection).
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    const started: Array<Promise<unknown>> = [];
    for (let i = 0; i < workers; i++) started.push(once(cluster.fork(), 'listening'));
    await Promise.all(started);
    process.stdout.write('ready\n');
    process.on('SIGTERM', () => {
      for (const w of Object.values(cluster.workers ?? {})) w?.kill();
      process.exit(0);
    });
    return;
  }
  const server = mode === 'relay' ? relay(upstream) : httpProxy(upstream);
  server.listen(listen);
  await once(server, 'listening');
  if (cluster.isPrimary) {
    process.stdout.write('ready\n');
    process.on('SIGTERM', () => process.exit(0));
  }
}

if (isMain(import.meta.url)) {
  const [mode, listen, upstream, workers] = process.argv.slice(2);
  if ((mode !== 'relay' && mode !== 'http') || !listen || !upstream) {
    console.error('usage: node-floor <relay|http> <listen> <upstream> [workers]');
    process.exit(2);
  }
  await main(mode, listen, upstream, Number(workers ?? 1));
}
