/**
 * `who: { container: { name, label } }` with real runc containers (cgroup /docker/<id>):
 * the gateway asks the upstream Docker API who the container is; a container the API
 * does not know is unknown and matches no rule, not even one under `not`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { enterHostCgroup } from '../helpers/cgroups.js';
import { run } from '../helpers/index.js';
import { compileStatic, needRunc, runContainer } from '../helpers/runc.js';
import { gatewayFixture, parseResponses, req } from './helpers.js';
import { unixClientSource } from '../helpers/c-client.js';

/** A static client: connects to argv[1], sends argv[2], prints everything until the server closes. */
const CLIENT = unixClientSource(`
  write(s, argv[2], strlen(argv[2]));
  char buf[4096];
  ssize_t n;
  while ((n = read(s, buf, sizeof buf)) > 0) fwrite(buf, 1, n, stdout);
  return 0;
`);

test(
  'container names through the Docker API: named container allowed, unknown container matches nothing (not even under not)',
  { skip: needRunc() },
  async (t) => {
    const known = new Map<string, string>();
    const gw = await gatewayFixture(
      t,
      {
        api: 'docker',
        rules: [
          { name: 'ci', who: { container: { name: 'ci-runner', label: { team: 'build' } } }, allow: ['GET /**'] },
          { name: 'not-ci', who: { not: { container: { name: 'ci-runner' } } }, allow: ['GET /_ping'] },
          { name: 'rest', who: {}, allow: ['GET /nothing'] },
        ],
        forward: { identity: true },
      },
      {
        upstream: {
          handle: (r, res) => {
            const m = /^\/containers\/([0-9a-f]{64})\/json$/.exec(r.url!);
            if (!m) return false;
            const name = known.get(m[1]!);
            res.writeHead(name ? 200 : 404, { 'Content-Type': 'application/json' });
            res.end(
              JSON.stringify(
                name ? { Id: m[1], Name: `/${name}`, Config: { Labels: { team: 'build' } } } : { message: 'No such container' },
              ),
            );
            return true;
          },
        },
      },
    );
    const client = gw.tmp.path('bin/client');
    compileStatic(CLIENT, client);
    const inContainer = async (bundle: string, name: string | undefined, request: string) => {
      mkdirSync(gw.tmp.path(bundle));
      const c = runContainer({
        bundle: gw.tmp.path(bundle),
        args: ['/client', '/sock/gw.sock', request],
        files: [[client, '/client']],
        mounts: [{ source: gw.tmp.dir, destination: '/sock' }],
      });
      if (name) known.set(c.id, name);
      const out = await c.child.output();
      await c.stop();
      return { id: c.id, responses: parseResponses(out.stdout) };
    };
    // runContainer knows the id before the container runs: the name is registered before the client connects.
    const a = await inContainer('a', 'ci-runner', req('GET /containers/json', { close: true }));
    assert.equal(a.responses[0]!.status, 200, a.responses[0]!.body);
    const seen = gw.up.received.find((r) => r.url === '/containers/json')!;
    assert.equal(seen.headers['x-secpolicy-container'], `docker:${a.id}`);
    assert.equal(seen.headers['x-secpolicy-rule'], 'ci');

    const b = await inContainer('b', undefined, req('GET /_ping', { close: true }));
    assert.equal(b.responses[0]!.status, 403);
    assert.equal(JSON.parse(b.responses[0]!.body).message, 'secpolicy: rest: GET /_ping is not allowed');
    assert.ok(
      gw.up.received.some((r) => r.url === `/containers/${b.id}/json`),
      'the gateway asked the Docker API',
    );
    // A host peer (in a host cgroup layout) is known not to be that container: `not` holds for it.
    const hostPeer = run('sh', ['-c', `${enterHostCgroup()} && exec "$@"`, 'sh', client, gw.path, req('GET /_ping', { close: true })]);
    const [host] = parseResponses((await hostPeer.output()).stdout);
    assert.equal(host!.status, 200);
    assert.equal(gw.logs.at(-1)!.rule, 'not-ci');
  },
);
