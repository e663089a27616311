/**
 * `secpolicy convert docker-socket-proxy`: the variables read as docker-socket-proxy's
 * haproxy.cfg reads them (defaults, HAProxy's boolean, the POST gate, the ALLOW_* actions),
 * the stricter parts, and a printed policy that the gateway loads.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { parse } from 'yaml';
import { dockerSocketProxyPolicy, haproxyBool, settingsOf } from '../../src/gateway/convert.js';
import { tempDir } from '../helpers/index.js';
import { secpolicy } from './cli.js';

type Doc = { version: number; api: string; rules: Array<{ name: string; who: object; allow: string[]; deny?: string[]; docker?: object }> };
const rule = (env: Record<string, string>) => (dockerSocketProxyPolicy(env) as Doc).rules[0]!;

test('values are read as HAProxy reads env(X) -m bool; EVENTS, PING and VERSION are on unless set to 0', () => {
  assert.deepEqual(['1', '2', '-1', ' 7', '0', '', 'true', 'yes', 'on', undefined].map(haproxyBool), [
    true,
    true,
    true,
    true,
    false,
    false,
    false,
    false,
    false,
    false,
  ]);
  const s = settingsOf({});
  assert.deepEqual(
    Object.keys(s).filter((k) => s[k]),
    ['EVENTS', 'PING', 'VERSION'],
  );
  assert.deepEqual(rule({}).allow, [
    'GET /events/**',
    'HEAD /events/**',
    'GET /_ping/**',
    'HEAD /_ping/**',
    'GET /version/**',
    'HEAD /version/**',
  ]);
  assert.deepEqual(rule({ EVENTS: '0', PING: '0', VERSION: 'no' }).allow, []);
});

test('POST opens every method on the open prefixes; ALLOW_* open container actions without CONTAINERS, still behind POST', () => {
  assert.deepEqual(rule({ POST: '1', PING: '0', EVENTS: '0', VERSION: '0', NETWORKS: '1' }).allow, ['* /networks/**']);
  assert.deepEqual(rule({ ALLOW_RESTARTS: '1', PING: '0', EVENTS: '0', VERSION: '0' }).allow, [
    'GET /containers/*/stop',
    'HEAD /containers/*/stop',
    'GET /containers/*/restart',
    'HEAD /containers/*/restart',
    'GET /containers/*/kill',
    'HEAD /containers/*/kill',
  ]);
  assert.deepEqual(rule({ ALLOW_START: '1', ALLOW_STOP: '1', POST: '1', PING: '0', EVENTS: '0', VERSION: '0' }).allow, [
    '* /containers/*/start',
    '* /containers/*/stop',
  ]);
  // CONTAINERS covers the actions already: no separate patterns.
  assert.ok(!rule({ CONTAINERS: '1', ALLOW_START: '1' }).allow.some((p) => p.includes('/start')));
});

test('stricter: archive/export need POST too, exec creation needs EXEC, container bodies are checked', () => {
  assert.deepEqual(rule({ CONTAINERS: '1' }).deny, ['GET /containers/*/archive', 'GET /containers/*/export']);
  assert.equal(rule({ CONTAINERS: '1' }).docker, undefined);
  assert.deepEqual(rule({ CONTAINERS: '1', POST: '1' }).deny, ['POST /containers/*/exec']);
  assert.deepEqual(rule({ CONTAINERS: '1', POST: '1' }).docker, {});
  assert.equal(rule({ CONTAINERS: '1', POST: '1', EXEC: '1' }).deny, undefined);
});

test('the CLI prints YAML that `gateway --check` accepts, with --who; a bad --who or setting is exit 2', async () => {
  const tmp = tempDir('secpolicy-convert-');
  try {
    const r = await secpolicy(['convert', 'docker-socket-proxy', 'CONTAINERS=1', '--who', '{"uid":0}'], {
      env: { POST: '1', LOG_LEVEL: 'debug' },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^# A secpolicy gateway policy converted from docker-socket-proxy settings\.\n# On: POST CONTAINERS EVENTS PING VERSION\n# Not about access, left out: LOG_LEVEL\n/,
    );
    const doc = parse(r.stdout) as Doc;
    assert.deepEqual(doc.rules[0]!.who, { uid: 0 });
    assert.equal(doc.api, 'docker');
    writeFileSync(tmp.path('p.yaml'), r.stdout, { mode: 0o600 });
    const check = await secpolicy(['gateway', '--check', '--policy', tmp.path('p.yaml')]);
    assert.equal(check.code, 0, check.stderr);
    for (const args of [['--who', '{"uid":'], ['--who', '{"nosuchkey":1}'], ['--who', '"x"'], ['CONTAINERS']]) {
      const bad = await secpolicy(['convert', 'docker-socket-proxy', ...args]);
      assert.equal(bad.code, 2, args.join(' '));
      assert.match(bad.stderr, /^secpolicy: ERR_SECPOLICY_(INVALID_ARG|POLICY_FILE)/);
    }
  } finally {
    tmp.cleanup();
  }
});
