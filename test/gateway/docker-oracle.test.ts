/**
 * dockerd as the oracle: fast-check generates create, update, exec and start requests that
 * spell forbidden settings every way the daemon reads them (key case, the Kelvin sign and
 * the long s, `\u` escapes in keys, duplicates with the forbidden one first or last, nulls,
 * the top level against `HostConfig`, Binds/Mounts/Volumes/VolumesFrom, API prefixes from
 * /v1.12 up and none), mixed with allowed ones. A restricted user (setpriv) sends each
 * through the `secpolicy gateway` CLI to a real dockerd; for every container (and exec) the
 * daemon actually created, its own inspect through the direct socket must show a
 * configuration within the policy, checked here by code independent of the gateway's.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import fc from 'fast-check';
import { IMAGE, startDockerd, type GatewayProcess } from '../helpers/dockerd.js';
import { startDockerGateway } from './docker-fixture.js';
import { needCommand, run, type RunAs } from '../helpers/index.js';

const daemon = await startDockerd();
const skip = daemon.skip || needCommand('setpriv');
const USER: RunAs = { uid: 1, gid: 1 };
/** Bounded so that the whole file stays well under a minute or two on a small machine. */
const RUNS = 300;

let gateway: GatewayProcess;
let ok: string;
let send: (method: string, path: string, body?: string) => Promise<{ status: number; body: string }>;
let stopClient: () => Promise<void>;
let running: string;
let fresh: string;

before(async () => {
  if (skip) return;
  ok = join(daemon.dir, 'ok');
  mkdirSync(join(ok, 'r'), { recursive: true, mode: 0o755 });
  gateway = await startDockerGateway(
    daemon,
    `version: 1
api: docker
rules:
  - name: limited
    who: { uid: 1 }
    allow: ["GET /**", "HEAD /**", "POST /containers/create", "POST /containers/*/start", "POST /containers/*/update",
            "POST /containers/*/exec", "POST /exec/*/start"]
    docker: { privileged: false, hostNamespaces: false, capAdd: [NET_ADMIN], devices: false, binds: ["${ok}/**"] }
`,
  );
  // Made directly: a running container to update and exec into, one never started, and one of root's that binds /.
  const r1 = await daemon.docker(['run', '-d', '--name', 'running', '--network', 'none', IMAGE, 'sleep', '600']);
  assert.equal(r1.code, 0, r1.stderr);
  running = r1.stdout.trim();
  const r2 = await daemon.docker(['create', '--name', 'fresh', '--network', 'none', IMAGE, 'sleep', '600']);
  assert.equal(r2.code, 0, r2.stderr);
  fresh = r2.stdout.trim();
  const r3 = await daemon.docker(['create', '--name', 'rootbinder', '--network', 'none', '-v', '/:/host', IMAGE, 'true']);
  assert.equal(r3.code, 0, r3.stderr);
  // One client process as the restricted user, one request per line, answered in order.
  const script = `
    const http = require('node:http');
    const rl = require('node:readline').createInterface({ input: process.stdin });
    const queue = [];
    let busy = false;
    const next = () => {
      if (busy || queue.length === 0) return;
      busy = true;
      const { method, path, body } = JSON.parse(queue.shift());
      const headers = body === undefined ? {} : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) };
      const req = http.request({ socketPath: ${JSON.stringify(gateway.socket)}, method, path, headers, agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => { process.stdout.write(JSON.stringify({ status: res.statusCode, body: text }) + '\\n'); busy = false; next(); });
      });
      req.on('error', (e) => { process.stdout.write(JSON.stringify({ status: 0, body: String(e) }) + '\\n'); busy = false; next(); });
      req.end(body);
    };
    rl.on('line', (l) => { queue.push(l); next(); });`;
  const child = run(process.execPath, ['-e', script], { as: USER });
  const waiting: Array<(r: { status: number; body: string }) => void> = [];
  createInterface({ input: child.stdout! }).on('line', (l) => waiting.shift()?.(JSON.parse(l)));
  send = (method, path, body) =>
    new Promise((resolve) => {
      waiting.push(resolve);
      child.stdin!.write(JSON.stringify({ method, path, body }) + '\n');
    });
  stopClient = async () => {
    child.stdin!.end();
    await child.output();
  };
});

after(async () => {
  await stopClient?.();
  await gateway?.stop();
  await daemon.stop();
});

// ---- spelling ----------------------------------------------------------------------------

/** Ways to write a key that Go's decoder matches to the same field. */
const spelling = fc.constantFrom('as-is', 'lower', 'upper', 'alternate', 'kelvin-long-s', 'escape');
function spell(key: string, how: string): string {
  switch (how) {
    case 'lower':
      return JSON.stringify(key.toLowerCase());
    case 'upper':
      return JSON.stringify(key.toUpperCase());
    case 'alternate':
      return JSON.stringify([...key].map((c, i) => (i % 2 ? c.toLowerCase() : c.toUpperCase())).join(''));
    case 'kelvin-long-s':
      // K (U+212A) folds to k and ſ (U+017F) to s in Go's matching; a key without either stays as it is.
      return JSON.stringify(key.replace(/k/gi, '\u212a').replace(/s/gi, '\u017f'));
    case 'escape':
      return '"' + [...key].map((c, i) => (i === 1 ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : c)).join('') + '"';
    default:
      return JSON.stringify(key);
  }
}

/** Settings the policy forbids, as [field, JSON value]. */
const FORBIDDEN: Array<[string, string]> = [
  ['Privileged', 'true'],
  ['CapAdd', '["SYS_ADMIN"]'],
  ['CapAdd', '"ALL"'],
  ['CapAdd', '["cap_sys_module"]'],
  ['PidMode', '"host"'],
  ['IpcMode', '"host"'],
  ['UTSMode', '"host"'],
  ['UsernsMode', '"host"'],
  ['NetworkMode', '"host"'],
  ['NetworkMode', '"container:running"'],
  ['Binds', '["/:/host"]'],
  ['Binds', '["/etc:/etc2:ro"]'],
  ['Binds', `["${'OK'}/w:/w"]`],
  ['Binds', `["${'OK'}/../../../../etc:/x:ro"]`],
  ['Mounts', '[{"Type":"bind","Source":"/","Target":"/h"}]'],
  ['Mounts', `[{"Type":"bind","Source":"${'OK'}/r","Target":"/r"}]`],
  [
    'Mounts',
    '[{"Type":"volume","Target":"/v","VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"type":"tmpfs","o":"BIND","device":"/"}}}}]',
  ],
  ['VolumesFrom', '["rootbinder"]'],
  ['Tmpfs', '{"/t":"rbind"}'],
  ['Devices', '[{"PathOnHost":"/dev/null","PathInContainer":"/dev/x","CgroupPermissions":"rwm"}]'],
  ['SecurityOpt', '["seccomp=unconfined"]'],
  ['SecurityOpt', '["label=disable"]'],
  ['SecurityOpt', '["disable"]'],
  ['SecurityOpt', '["apparmor=unconfined"]'],
  ['SecurityOpt', '["seccomp={\\"defaultAction\\":\\"SCMP_ACT_ALLOW\\"}"]'],
];
/** Settings the policy allows. */
const ALLOWED: Array<[string, string]> = [
  ['Privileged', 'false'],
  ['CapAdd', '["NET_ADMIN"]'],
  ['PidMode', '""'],
  ['NetworkMode', '"none"'],
  ['Binds', `["${'OK'}/r:/r:ro"]`],
  ['Mounts', `[{"Type":"bind","Source":"${'OK'}/r","Target":"/r","ReadOnly":true}]`],
  ['Mounts', '[{"Type":"tmpfs","Target":"/t"}]'],
  ['Tmpfs', '{"/t":"size=1m,noexec"}'],
  ['SecurityOpt', '["no-new-privileges"]'],
  ['SecurityOpt', '["no-new-privileges:true"]'],
  ['Devices', '[]'],
];

const setting = (list: Array<[string, string]>) => fc.constantFrom(...list);
/** One host-config entry: a setting, maybe shadowed by a duplicate (forbidden first or last), maybe nulled after. */
const entry = fc.record({
  main: fc.oneof(setting(FORBIDDEN), setting(ALLOWED)),
  spelling,
  duplicate: fc.option(fc.record({ pick: fc.nat(), spelling, first: fc.boolean() })),
  nullAfter: fc.boolean(),
});
const placement = fc.constantFrom('HostConfig', 'top', 'both', 'nullHostConfig');
const prefix = fc.constantFrom('', '/v1.12', '/v1.18', '/v1.23', '/v1.24', '/v1.25', '/v1.30', '/v1.40', '/v1.41');

type Entry = typeof entry extends fc.Arbitrary<infer T> ? T : never;

function members(entries: Entry[]): string[] {
  const out: string[] = [];
  for (const e of entries) {
    const [key, value] = e.main;
    const main = `${spell(key, e.spelling)}:${value.replaceAll('OK', ok)}`;
    // A duplicate of the same field (another spelling), before or after.
    const dup = e.duplicate ? `${spell(key, e.duplicate.spelling)}:${dupValue(key, e.duplicate.pick).replaceAll('OK', ok)}` : undefined;
    if (dup && e.duplicate!.first) out.push(dup);
    out.push(main);
    if (dup && !e.duplicate!.first) out.push(dup);
    if (e.nullAfter) out.push(`${spell(key, 'lower')}:null`);
  }
  return out;
}

/** A duplicate's value: one of the values, forbidden or allowed, of the same field. */
function dupValue(key: string, pick: number): string {
  const same = [...FORBIDDEN, ...ALLOWED].filter(([k]) => k === key);
  return same[pick % same.length]![1];
}

const createBody = fc.record({ entries: fc.array(entry, { minLength: 1, maxLength: 3 }), placement, volumes: fc.boolean() });
function createText(b: { entries: Entry[]; placement: string; volumes: boolean }): string {
  const host = members(b.entries).join(',');
  const base = [`"Image":"${IMAGE}"`, '"Cmd":["true"]', ...(b.volumes ? ['"Volumes":{"/anon":{}}'] : [])];
  switch (b.placement) {
    case 'HostConfig':
      return `{${[...base, `"HostConfig":{${host}}`].join(',')}}`;
    case 'top':
      return `{${[...base, host].join(',')}}`;
    case 'both':
      return `{${[...base, `"HostConfig":{"NetworkMode":"none"}`, host].join(',')}}`;
    default:
      return `{${[...base, '"HostConfig":null', host].join(',')}}`;
  }
}

const request = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('create' as const), prefix, body: createBody }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('update' as const),
      prefix,
      key: fc.constantFrom('Devices', 'BlkioWeightDevice', 'DeviceCgroupRules', 'CpuShares'),
      spelling,
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('exec' as const), prefix, spelling, last: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('start' as const), prefix, body: createBody }) },
);

// ---- the oracle: the daemon's own view, checked without the gateway's code ----------------

const NNP = /^no-new-privileges([:=](true|1|t|TRUE|True))?$/;

async function violations(inspect: {
  HostConfig: Record<string, unknown>;
  Mounts: Array<{ Type: string; Source: string; Name?: string; RW: boolean }>;
}): Promise<string[]> {
  const hc = inspect.HostConfig;
  const out: string[] = [];
  if (hc.Privileged === true) out.push('privileged');
  for (const cap of (hc.CapAdd as string[] | null) ?? []) if (!/^(cap_)?net_admin$/i.test(cap)) out.push(`CapAdd ${cap}`);
  for (const f of ['PidMode', 'IpcMode', 'UTSMode', 'UsernsMode', 'NetworkMode']) {
    const v = String(hc[f] ?? '').toLowerCase();
    if (v === 'host' || v.startsWith('container:')) out.push(`${f} ${v}`);
  }
  for (const f of ['Devices', 'DeviceRequests', 'DeviceCgroupRules', 'VolumesFrom', 'BlkioWeightDevice'])
    if (((hc[f] as unknown[] | null) ?? []).length > 0) out.push(f);
  for (const opt of (hc.SecurityOpt as string[] | null) ?? []) if (!NNP.test(opt)) out.push(`SecurityOpt ${opt}`);
  for (const [dst, opts] of Object.entries((hc.Tmpfs as Record<string, string> | null) ?? {}))
    if (/(^|,)\s*r?bind\s*(,|$)/i.test(opts)) out.push(`Tmpfs ${dst} ${opts}`);
  for (const m of inspect.Mounts ?? []) {
    if (m.Type === 'bind' && (!m.Source.startsWith(ok + '/') || m.RW)) out.push(`bind ${m.Source} rw=${m.RW}`);
    if (m.Type === 'volume') {
      const v = await daemon.api('GET', `/volumes/${m.Name}`);
      const o = String((JSON.parse(v.body) as { Options?: { o?: string } | null }).Options?.o ?? '');
      if (/bind/i.test(o)) out.push(`volume ${m.Name} o=${o}`);
    }
  }
  return out;
}

test(
  `dockerd as the oracle: ${RUNS} generated requests through the gateway as a restricted user, every container created obeys the policy`,
  { skip, timeout: 300_000 },
  async (t) => {
    const counts = { bodies: 0, forwarded: 0, containers: 0, execs: 0, updates: 0, starts: 0, violations: 0 };
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        counts.bodies++;
        let found: string[] = [];
        if (r.kind === 'create') {
          const res = await send('POST', `${r.prefix}/containers/create`, createText(r.body));
          if (res.status !== 201) return;
          counts.forwarded++;
          counts.containers++;
          const id = (JSON.parse(res.body) as { Id: string }).Id;
          const c = await daemon.api('GET', `/containers/${id}/json`);
          found = await violations(JSON.parse(c.body));
          await daemon.api('DELETE', `/containers/${id}?v=1&force=1`);
        } else if (r.kind === 'update') {
          const value =
            r.key === 'CpuShares'
              ? '512'
              : r.key === 'DeviceCgroupRules'
                ? '["a *:* rwm"]'
                : r.key === 'Devices'
                  ? FORBIDDEN.find(([k]) => k === 'Devices')![1]
                  : '[{"Path":"/dev/null","Weight":100}]';
          const res = await send('POST', `${r.prefix}/containers/${running}/update`, `{${spell(r.key, r.spelling)}:${value}}`);
          if (res.status === 200) {
            counts.forwarded++;
            counts.updates++;
          }
          const c = await daemon.api('GET', `/containers/${running}/json`);
          found = await violations(JSON.parse(c.body));
        } else if (r.kind === 'exec') {
          const keys = [`${spell('Privileged', r.spelling)}:true`, '"Privileged":false'];
          const body = `{"Cmd":["true"],${(r.last ? keys : keys.reverse()).join(',')}}`;
          const res = await send('POST', `${r.prefix}/containers/${running}/exec`, body);
          if (res.status !== 201) return;
          counts.forwarded++;
          counts.execs++;
          const id = (JSON.parse(res.body) as { Id: string }).Id;
          const e = JSON.parse((await daemon.api('GET', `/exec/${id}/json`)).body) as { ProcessConfig: { privileged: boolean } };
          if (e.ProcessConfig.privileged) found.push('privileged exec');
        } else {
          const res = await send('POST', `${r.prefix}/containers/${fresh}/start`, createText(r.body));
          if (res.status < 300) {
            counts.forwarded++;
            counts.starts++;
          }
          const c = JSON.parse((await daemon.api('GET', `/containers/${fresh}/json`)).body) as {
            State: { StartedAt: string };
            HostConfig: Record<string, unknown>;
            Mounts: Array<{ Type: string; Source: string; Name?: string; RW: boolean }>;
          };
          found = await violations(c);
          if (c.State.StartedAt !== '0001-01-01T00:00:00Z') found.push('the container was started with a body');
        }
        counts.violations += found.length;
        assert.deepEqual(found, [], `${r.kind} at ${r.prefix || 'no prefix'} gave the daemon: ${found.join(', ')}`);
      }),
      { numRuns: RUNS, endOnFailure: true },
    );
    t.diagnostic(JSON.stringify(counts));
    process.stdout.write(`# oracle counts: ${JSON.stringify(counts)}\n`);
    // The generator reaches the daemon: allowed bodies are part of the mix and some must be created.
    assert.ok(counts.containers > 0, 'no container was created: the test would prove nothing');
  },
);
