/**
 * NSS lookups through libc, and the name cache. The cache tests run in a child process in
 * its own mount namespace, where /etc/passwd and /etc/group are swapped with bind mounts
 * while the process runs: the only honest way to see whether an answer came from NSS or
 * from the cache, without touching the host's files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCode, isSecpolicyError } from '../../src/index.js';
import { configureNameCache, gidOf, groupName, uidOf, userName } from '../../src/native/index.js';
import { needCommand, needRoot, run, tempDir } from '../helpers/index.js';

test('ids and names of users and groups that exist, and of ones that do not', () => {
  assert.equal(userName(0), 'root');
  assert.equal(userName(1), 'daemon');
  assert.equal(userName(65534), 'nobody');
  assert.equal(groupName(4), 'adm');
  assert.equal(groupName(65534), 'nogroup');
  assert.equal(uidOf('daemon'), 1);
  assert.equal(gidOf('cdrom'), 24);
  assert.equal(userName(3_999_999_999), undefined);
  assert.equal(groupName(3_999_999_999), undefined);
  assert.equal(uidOf('no-such-user-secpolicy'), undefined);
  assert.equal(gidOf('no-such-group-secpolicy'), undefined);
  assert.equal(uidOf('x'.repeat(5000)), undefined);
  // Asked twice: the second answer comes from the cache and is the same.
  assert.equal(userName(3_999_999_999), undefined);
  assert.equal(uidOf('daemon'), 1);
});

test('configureNameCache refuses bad options, naming them', () => {
  const invalid = (o: unknown, name: string) =>
    assert.throws(
      () => configureNameCache(o as never),
      (e: unknown) => isSecpolicyError(e) && e.code === ErrorCode.INVALID_ARG && e.message.includes(`"${name}"`),
    );
  invalid({ maxEntries: 0 }, 'options.maxEntries');
  invalid({ maxEntries: 1.5 }, 'options.maxEntries');
  invalid({ ttl: -1 }, 'options.ttl');
  invalid({ ttl: '100' }, 'options.ttl');
  invalid(null, 'options');
});

const dist = (rel: string) => fileURLToPath(new URL(rel, import.meta.url));

// Runs in the child, in a private mount namespace. Prints one JSON object of observations.
const script = `
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
const { configureNameCache, clearNameCache, userName, uidOf, groupName, gidOf } = await import(process.argv[2]);
const dir = process.argv[3];
const bind = (file, target) => execFileSync('mount', ['--bind', file, target]);
const unbind = (target) => execFileSync('umount', [target]);
writeFileSync(dir + '/passwd', readFileSync('/etc/passwd', 'utf8') + 'secpolicycache:x:4242:4242::/:/bin/false\\n');
const members = Array.from({ length: 600 }, (_, i) => 'member' + i).join(',');
writeFileSync(dir + '/group', readFileSync('/etc/group', 'utf8') + 'secpolicybig:x:4343:' + members + '\\n');
const out = {};

// A long TTL while the cached miss is checked, a short one while it expires: no step
// depends on how fast the one before it ran.
configureNameCache({ ttl: 60000 });
out.before = userName(4242) ?? null;
bind(dir + '/passwd', '/etc/passwd');
out.missCached = userName(4242) ?? null;
configureNameCache({ ttl: 300 });
unbind('/etc/passwd');
out.expiring = userName(4242) ?? null;
bind(dir + '/passwd', '/etc/passwd');
await sleep(450);
out.afterTtl = userName(4242) ?? null;
out.uidOf = uidOf('secpolicycache') ?? null;

configureNameCache({ ttl: 60000, maxEntries: 2 });
out.fresh = userName(4242) ?? null;
unbind('/etc/passwd');
out.hitCached = userName(4242) ?? null;
userName(0);
userName(1);
out.evicted = userName(4242) ?? null;

bind(dir + '/passwd', '/etc/passwd');
out.staleMiss = userName(4242) ?? null;
clearNameCache();
out.cleared = userName(4242) ?? null;

bind(dir + '/group', '/etc/group');
out.bigGroup = groupName(4343) ?? null;
out.bigGid = gidOf('secpolicybig') ?? null;
console.log(JSON.stringify(out));
`;

/** A reason to skip when this process may not make a mount namespace (an unprivileged container). */
function needMountNamespace(): string | false {
  const skip = needRoot('mounts over /etc/passwd in a private mount namespace') || needCommand('unshare', 'mount');
  if (skip) return skip;
  return spawnSync('unshare', ['--mount', 'true']).status === 0 ? false : 'needs permission to create a mount namespace (unshare --mount)';
}

test('the name cache: TTL, bound, clear, and NSS records larger than the first buffer', { skip: needMountNamespace() }, async (t) => {
  const tmp = tempDir('secpolicy-nss-');
  t.after(() => tmp.cleanup());
  const file = tmp.path('cache-probe.mjs');
  writeFileSync(file, script);
  const child = run('unshare', ['--mount', '--propagation', 'private', process.execPath, file, dist('../../src/native/index.js'), tmp.dir]);
  t.after(() => child.kill('SIGKILL'));
  const { code, stdout, stderr } = await child.output();
  assert.equal(code, 0, stderr);
  assert.deepEqual(JSON.parse(stdout), {
    before: null,
    missCached: null, // "no such user" is cached too, until its TTL ends
    expiring: null,
    afterTtl: 'secpolicycache',
    uidOf: 4242,
    fresh: 'secpolicycache',
    hitCached: 'secpolicycache', // the user is gone from NSS, the cache still answers
    evicted: null, // two newer entries pushed it out of a 2-entry cache
    staleMiss: null,
    cleared: 'secpolicycache',
    bigGroup: 'secpolicybig', // a ~6 KB group record: the ERANGE retry grew the buffer
    bigGid: 4343,
  });
});
