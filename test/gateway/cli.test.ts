/** `secpolicy gateway` as a real process: policy file, decision log file, SIGTERM while a request is in progress. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { needCommand, run, tempDir } from '../helpers/index.js';
import { rawRequest, upstream } from './helpers.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** Resolves with the first match of `pattern` in the child's stderr. */
function stderrLine(child: ReturnType<typeof run>, pattern: RegExp): Promise<string> {
  let seen = '';
  return new Promise((resolve, reject) => {
    const check = (d?: Buffer): void => {
      if (d) seen += d;
      const m = pattern.exec(seen);
      if (m) {
        child.stderr!.off('data', check);
        resolve(m[0]);
      }
    };
    child.stderr!.on('data', check);
    child.once('close', () => reject(new Error(`the gateway exited before printing ${pattern}: ${seen}`)));
  });
}

test(
  'secpolicy gateway: decides by the policy file, appends the decision log, and on SIGTERM finishes a request in progress, removes its socket and exits 0',
  { skip: needCommand('curl') },
  async (t) => {
    const tmp = tempDir('secpolicy-gateway-cli-');
    t.after(() => tmp.cleanup());
    let release: (() => void) | undefined;
    const slowStarted = new Promise<void>((started) => {
      void upstream(t, tmp.path('up.sock'), {
        handle: (req, res) => {
          if (req.url !== '/slow') return false;
          started();
          release = () => res.end('{"slow":true}');
          return true;
        },
      });
    });
    writeFileSync(
      tmp.path('gateway.yaml'),
      [
        'version: 1',
        'api: docker',
        'rules:',
        '  - name: me',
        `    who: { uid: ${process.getuid!()} }`,
        '    allow: ["GET /**"]',
        '    deny: ["GET /containers/*/archive"]',
      ].join('\n'),
    );
    const gw = run(process.execPath, [
      CLI,
      'gateway',
      '--listen',
      tmp.path('gw.sock'),
      '--to',
      tmp.path('up.sock'),
      '--policy',
      tmp.path('gateway.yaml'),
      '--mode',
      '0660',
      '--log',
      tmp.path('decisions.log'),
    ]);
    t.after(() => gw.kill('SIGKILL'));
    await stderrLine(gw, /listening on .*gw\.sock \(mode 0660\)/);
    assert.equal(statSync(tmp.path('gw.sock')).mode & 0o777, 0o660);
    assert.equal(statSync(tmp.path('decisions.log')).mode & 0o777, 0o600);

    const curl = (path: string) =>
      run('curl', ['-s', '-w', '\n%{http_code}', '--path-as-is', '--unix-socket', tmp.path('gw.sock'), `http://docker${path}`]).output();
    assert.match((await curl('/v1.41/version')).stdout, /\n200$/);
    const denied = await curl('/v1.41/containers/abc/./archive');
    assert.match(
      denied.stdout,
      /^\{"message":"secpolicy: me: GET \/containers\/abc\/archive is denied by \\"GET \/containers\/\*\/archive\\""\}\n403$/,
    );

    const slow = curl('/slow');
    await slowStarted;
    gw.kill('SIGTERM');
    await stderrLine(gw, /SIGTERM: no new connections/);
    assert.equal(existsSync(tmp.path('gw.sock')), false, 'the socket file is removed at once');
    release!();
    assert.match((await slow).stdout, /"slow":true\}\n200$/, 'the request in progress finished');
    const exit = await gw.output();
    assert.equal(exit.code, 0, exit.stderr);

    const lines = readFileSync(tmp.path('decisions.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      lines.map((l) => [l.method, l.path, l.rule, l.allowed]),
      [
        ['GET', '/v1.41/version', 'me', true],
        ['GET', '/v1.41/containers/abc/archive', 'me', false],
        ['GET', '/slow', 'me', true],
      ],
    );
    assert.equal(lines[0].peer.uid, process.getuid!());
    assert.equal(typeof lines[0].time, 'string');
  },
);

test('secpolicy gateway: a bad policy file exits 2 naming the field and line', async (t) => {
  const tmp = tempDir('secpolicy-gateway-cli-');
  t.after(() => tmp.cleanup());
  writeFileSync(tmp.path('bad.yaml'), 'version: 1\nrules:\n  - name: x\n    who: {}\n    allow: ["GET /**"]\n    alow: ["POST /**"]\n');
  const out = await run(process.execPath, [
    CLI,
    'gateway',
    '--listen',
    tmp.path('g.sock'),
    '--to',
    tmp.path('u.sock'),
    '--policy',
    tmp.path('bad.yaml'),
  ]).output();
  assert.equal(out.code, 2);
  assert.match(out.stderr, /rules\[0\]\.alow \(line 6\): unknown key "alow"/);
  assert.equal(existsSync(tmp.path('g.sock')), false);
});

test(
  'secpolicy gateway --listen systemd: serves the socket systemd-socket-activate passed',
  { skip: needCommand('systemd-socket-activate', 'curl') },
  async (t) => {
    const tmp = tempDir('secpolicy-gateway-cli-');
    t.after(() => tmp.cleanup());
    await upstream(t, tmp.path('up.sock'));
    writeFileSync(tmp.path('gateway.yaml'), `rules:\n  - { name: me, who: { uid: ${process.getuid!()} }, allow: ["GET /**"] }\n`);
    const activator = run('systemd-socket-activate', [
      '-l',
      tmp.path('gw.sock'),
      '-E',
      `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`,
      process.execPath,
      CLI,
      'gateway',
      '--listen',
      'systemd',
      '--to',
      tmp.path('up.sock'),
      '--policy',
      tmp.path('gateway.yaml'),
    ]);
    t.after(() => activator.kill('SIGKILL'));
    await stderrLine(activator, /Listening on .*gw\.sock/);
    // The first connection starts the gateway, which then answers it.
    const out = await run('curl', [
      '-s',
      '-w',
      '\n%{http_code}',
      '--unix-socket',
      tmp.path('gw.sock'),
      'http://docker/v1.41/_ping',
    ]).output();
    assert.match(out.stdout, /"url":"\/v1\.41\/_ping".*\n200$/s);
    const denied = await run('curl', [
      '-s',
      '-w',
      '\n%{http_code}',
      '-X',
      'POST',
      '--unix-socket',
      tmp.path('gw.sock'),
      'http://docker/x',
    ]).output();
    assert.match(denied.stdout, /\n403$/);
  },
);

test(
  'secpolicy gateway keeps the strict HTTP parser even under NODE_OPTIONS=--insecure-http-parser',
  { skip: needCommand('python3') },
  async (t) => {
    const tmp = tempDir('secpolicy-gateway-cli-');
    t.after(() => tmp.cleanup());
    const up = await upstream(t, tmp.path('up.sock'));
    writeFileSync(tmp.path('gateway.yaml'), `rules:\n  - { name: me, who: { uid: ${process.getuid!()} }, allow: ["POST /x"] }\n`);
    const gw = run(
      process.execPath,
      [CLI, 'gateway', '--listen', tmp.path('gw.sock'), '--to', tmp.path('up.sock'), '--policy', tmp.path('gateway.yaml')],
      {
        env: { ...process.env, NODE_OPTIONS: '--insecure-http-parser' },
      },
    );
    t.after(() => gw.kill('SIGKILL'));
    await stderrLine(gw, /listening on/);
    const smuggled = 'GET /containers/abc/archive HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n';
    const text = await rawRequest(
      tmp.path('gw.sock'),
      `POST /x HTTP/1.1\r\nHost: d\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`,
    );
    assert.match(text, /^HTTP\/1\.1 400 /);
    assert.equal(up.received.length, 0);
  },
);
