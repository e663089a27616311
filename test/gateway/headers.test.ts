/**
 * What a client can slip past the rules or into the record: a HEAD on a path whose GET is
 * denied, identity headers spelled the way CGI and WSGI servers fold them, and characters
 * that split or hide lines in the decision log.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { closeGateway, createGateway, parseGatewayPolicy } from '../../src/index.js';
import { logLine, type GatewayLogEntry } from '../../src/gateway/log.js';
import { needCommand, run, tempDir } from '../helpers/index.js';
import { gatewayFixture, hostContainerHeader, parseResponses, PYTHON, rawRequest, req } from './helpers.js';

const skipPy = needCommand('python3');
const ME = process.getuid!();

for (const api of ['docker', undefined] as const) {
  test(
    `HEAD follows GET: a deny pattern for GET also denies HEAD on the same path (${api ?? 'plain HTTP'})`,
    { skip: skipPy },
    async (t) => {
      const gw = await gatewayFixture(t, {
        version: 1,
        ...(api && { api }),
        rules: [{ name: 'readers', who: { uid: ME }, allow: ['GET /**', 'HEAD /**'], deny: ['GET /containers/*/archive'] }],
      });
      const targets = ['/containers/abc/archive?path=/etc/shadow', '/containers/abc/ARCHIVE', '/containers//abc/./archive'];
      if (api) targets.push('/v1.41/containers/abc/archive');
      const bytes = [...targets.map((p) => req(`HEAD ${p}`)), req('HEAD /containers/abc/json', { close: true })];
      // HEAD answers have no body: split on the heads only.
      const text = await rawRequest(gw.path, bytes.join(''));
      const statuses = [...text.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1]));
      assert.deepEqual(statuses, [...targets.map(() => 403), 200], text);
      assert.deepEqual(
        gw.up.received.map((r) => `${r.method} ${r.url}`),
        ['HEAD /containers/abc/json'],
        'only the allowed HEAD reached the upstream',
      );
      const denied = gw.logs.filter((e) => !e.allowed);
      assert.equal(denied.length, targets.length);
      for (const e of denied) assert.match(e.reason, /^HEAD .* is denied by "GET \/containers\/\*\/archive"$/);
    },
  );
}

/**
 * A CGI-style upstream: request headers become HTTP_* variables as CGI (RFC 3875 4.1.18)
 * and WSGI servers make them, upper case with `-` turned into `_`, so `X_Secpolicy_Uid`
 * and `X-Secpolicy-Uid` land in the same variable (values joined in arrival order, the
 * client's first). It answers with the HTTP_X_SECPOLICY_* variables it saw.
 */
const CGI_UPSTREAM = `
import http.server, json, socketserver, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        env = {}
        for name, value in self.headers.items():
            key = 'HTTP_' + name.upper().replace('-', '_')
            env[key] = env[key] + ',' + value if key in env else value
        body = json.dumps({k: v for k, v in env.items() if k.startswith('HTTP_X_SECPOLICY')}).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(socketserver.UnixStreamServer):
    def get_request(self):
        conn, _ = self.socket.accept()
        return conn, ('unix', 0)
server = Server(sys.argv[1], Handler)
print('ready', flush=True)
server.serve_forever()
`;

test(
  'identity headers under any spelling (case, _ for -) never reach a CGI-style upstream: only the gateway’s values do',
  { skip: skipPy },
  async (t) => {
    const tmp = tempDir('secpolicy-gateway-cgi-');
    t.after(() => tmp.cleanup());
    const up = run(PYTHON, ['-c', CGI_UPSTREAM, tmp.path('up.sock')]);
    t.after(() => up.kill('SIGKILL'));
    await once(up.stdout!, 'data');
    const server = await createGateway({
      listen: tmp.path('gw.sock'),
      target: tmp.path('up.sock'),
      policy: parseGatewayPolicy({
        version: 1,
        rules: [{ name: 'me', who: { uid: ME }, allow: ['GET /**'] }],
        forward: { identity: true },
      }),
    });
    t.after(() => closeGateway(server, { grace: 0 }));
    const forged = [
      'X_Secpolicy_Uid: 31337',
      'x_secpolicy_gid: 31337',
      'X-SECPOLICY_GROUPS: 0',
      'X_SECPOLICY-RULE: admin',
      'x_Secpolicy_User: root',
      'X_Secpolicy_Container: docker:forged',
      'X__Secpolicy--Pid: 1',
      'XSecpolicyUid: 31337',
    ];
    const [res] = parseResponses(await rawRequest(tmp.path('gw.sock'), req('GET /whoami', { headers: forged, close: true })));
    assert.equal(res!.status, 200, res!.body);
    const env = JSON.parse(res!.body) as Record<string, string>;
    assert.equal(env.HTTP_X_SECPOLICY_UID, String(ME));
    assert.equal(env.HTTP_X_SECPOLICY_GID, String(process.getgid!()));
    assert.equal(env.HTTP_X_SECPOLICY_RULE, 'me');
    assert.equal(env.HTTP_X_SECPOLICY_PID !== undefined && /^\d+$/.test(env.HTTP_X_SECPOLICY_PID), true, JSON.stringify(env));
    // Never the forged docker:forged: the gateway's own value only (none on the host).
    assert.equal(env.HTTP_X_SECPOLICY_CONTAINER, await hostContainerHeader(), 'the container header is the gateway’s');
    assert.doesNotMatch(env.HTTP_X_SECPOLICY_GROUPS ?? '', /^0,|,0,/, 'no forged group first');
    if (env.HTTP_X_SECPOLICY_USER !== undefined) assert.doesNotMatch(env.HTTP_X_SECPOLICY_USER, /,/);
    for (const value of Object.values(env)) assert.doesNotMatch(value, /31337|admin|forged|^root,/, JSON.stringify(env));
  },
);

/** Characters that end or hide a line for some reader of the log: C0, DEL, C1, U+2028, U+2029. */
// eslint-disable-next-line no-control-regex -- the point of the test: no raw control character in a line
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029]/u;

test('decision log lines escape U+2028, U+2029 and every C0 and C1 control, and still parse to the same entry', () => {
  let all = '';
  for (let c = 0; c < 0x20; c++) all += String.fromCharCode(c);
  for (let c = 0x7f; c < 0xa0; c++) all += String.fromCharCode(c);
  all += '\u2028\u2029"\\';
  // Denied and allowed (whose reasons are serialised once and reused), each written twice.
  for (const allowed of [false, true]) {
    const e: GatewayLogEntry = {
      time: new Date().toISOString(),
      peer: { pid: 1, uid: 2, gid: 3, user: `u${all}`, container: { runtime: 'docker', id: `c${all}` }, program: null },
      method: `GET${all}`,
      path: `/p${all}`,
      rule: `r${all}`,
      allowed,
      reason: `why${all}`,
      mode: 'enforce',
      forwarded: allowed,
      query: `q${all}`,
      status: allowed ? 200 : 403,
    };
    for (let i = 0; i < 2; i++) {
      const line = logLine(e);
      assert.ok(line.endsWith('}\n'));
      assert.doesNotMatch(line.slice(0, -1), RAW_CONTROL, JSON.stringify(line));
      assert.deepEqual(JSON.parse(line), e);
    }
  }
});

test(
  'a path that decodes to U+2028, U+2029 or C1 controls reaches the log file escaped, one line per decision',
  { skip: skipPy },
  async (t) => {
    const tmp = tempDir('secpolicy-gateway-log-');
    t.after(() => tmp.cleanup());
    const gw = await gatewayFixture(t, { version: 1, rules: [{ name: 'me', who: { uid: ME }, allow: ['GET /ok'] }] });
    const server = await createGateway({
      listen: tmp.path('gw.sock'),
      target: gw.tmp.path('up.sock'),
      policy: parseGatewayPolicy({ version: 1, rules: [{ name: 'me', who: { uid: ME }, allow: ['GET /ok'] }] }),
      log: tmp.path('decisions.log'),
    });
    const target = '/x%E2%80%A8%E2%80%A9%C2%85%C2%9B%C2%80y';
    const [res] = parseResponses(await rawRequest(tmp.path('gw.sock'), req(`GET ${target}`, { close: true })));
    assert.equal(res!.status, 403);
    await closeGateway(server, { grace: 0 });
    const text = readFileSync(tmp.path('decisions.log'), 'utf8');
    assert.doesNotMatch(text.replace(/\n/g, ''), RAW_CONTROL, JSON.stringify(text));
    const lines = text.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, text);
    assert.equal(JSON.parse(lines[0]!).path, '/x\u2028\u2029\u0085\u009b\u0080y');
  },
);
