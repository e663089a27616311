import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { closeServer, needCommand, needRoot, nodeClient, run, tempDir } from '../helpers/index.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** Everything the child writes to stderr, and a way to wait for a line matching a pattern. */
function stderrOf(child: ReturnType<typeof run>): (pattern: RegExp) => Promise<string> {
  let seen = '';
  child.stderr!.on('data', (d: Buffer) => (seen += d));
  return (pattern) =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const m = pattern.exec(seen);
        if (!m) return;
        child.stderr!.off('data', check);
        child.off('close', gone);
        resolve(m[0]);
      };
      const gone = (): void => reject(new Error(`the proxy exited before printing ${pattern}: ${seen}`));
      child.stderr!.on('data', check);
      child.once('close', gone);
      check();
    });
}

test(
  'secpolicy proxy: forwards allowed clients, logs denials, and on SIGTERM lets an open connection finish, removes its socket and exits 0',
  { skip: needRoot() || needCommand('setpriv') },
  async (t) => {
    const tmp = tempDir('secpolicy-proxy-cli-');
    t.after(() => tmp.cleanup());
    writeFileSync(tmp.path('policy.yaml'), '# only root may pass\nuid: 0\n');
    const echo = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
    echo.listen(tmp.path('target.sock'));
    await once(echo, 'listening');
    t.after(() => closeServer(echo));

    const proxy = run(process.execPath, [
      CLI,
      'proxy',
      '--listen',
      tmp.path('p.sock'),
      '--to',
      tmp.path('target.sock'),
      '--policy',
      tmp.path('policy.yaml'),
      '--mode',
      '0666',
      '--grace',
      '5000',
    ]);
    t.after(() => proxy.kill('SIGKILL'));
    const stderrLine = stderrOf(proxy);
    await stderrLine(/listening on .*p\.sock \(mode 0666\)/);
    assert.equal(statSync(tmp.path('p.sock')).mode & 0o777, 0o666);

    const allowed = await nodeClient(tmp.path('p.sock'), { send: 'ping' }).output();
    assert.equal(allowed.stdout, 'ping');
    const denied = await nodeClient(tmp.path('p.sock'), { send: 'ping', as: { uid: 1, gid: 1 } }).output();
    assert.equal(denied.stdout, '', 'a denied client receives nothing');
    await stderrLine(/denied pid=\d+ uid=1 gid=1: [^\n]+\n/);

    // A connection open when SIGTERM arrives may still finish its exchange.
    const open = net.connect({ path: tmp.path('p.sock'), allowHalfOpen: true });
    await once(open, 'connect');
    open.write('a');
    await once(open, 'data');
    const stopping = stderrLine(/SIGTERM: no new connections/);
    proxy.kill('SIGTERM');
    await stopping;
    await assert.rejects(
      new Promise((resolve, reject) => net.connect(tmp.path('p.sock'), () => resolve(undefined)).once('error', reject)),
      'no new connections',
    );
    const reply = new Promise<string>((resolve) => {
      let got = '';
      open.on('data', (d) => (got += d));
      open.on('end', () => resolve(got));
    });
    open.end('fter the signal');
    assert.equal(await reply, 'fter the signal');
    open.destroy();
    const { code, stderr } = await proxy.output();
    assert.equal(code, 0, stderr);
    assert.match(stderr, /stopped\n$/);
    assert.equal(existsSync(tmp.path('p.sock')), false, 'the socket file is removed');
  },
);

test('secpolicy proxy: a bad policy file or mode is a one-line coded error, exit 2', async (t) => {
  const tmp = tempDir('secpolicy-proxy-cli-bad-');
  t.after(() => tmp.cleanup());
  writeFileSync(tmp.path('bad.yaml'), 'uid: 0\ncolour: blue\n');
  const bad = await run(process.execPath, [
    CLI,
    'proxy',
    '--listen',
    tmp.path('p.sock'),
    '--to',
    tmp.path('t.sock'),
    '--policy',
    tmp.path('bad.yaml'),
  ]).output();
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^secpolicy: ERR_SECPOLICY_POLICY_FILE: .*colour.*\n$/);
  assert.equal(existsSync(tmp.path('p.sock')), false);
  writeFileSync(tmp.path('ok.yaml'), 'uid: 0\n');
  const mode = await run(process.execPath, [
    CLI,
    'proxy',
    '--listen',
    tmp.path('p.sock'),
    '--to',
    tmp.path('t.sock'),
    '--policy',
    tmp.path('ok.yaml'),
    '--mode',
    '999',
  ]).output();
  assert.equal(mode.code, 2);
  assert.match(mode.stderr, /^secpolicy: ERR_SECPOLICY_INVALID_ARG: .*octal mode/);
  const missing = await run(process.execPath, [CLI, 'proxy', '--listen', tmp.path('p.sock')]).output();
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /ERR_SECPOLICY_INVALID_ARG: .*--to/);
});

test('secpolicy proxy --target-policy: a target that fails it never gets the client, and the proxy says why in one line', async (t) => {
  const tmp = tempDir('secpolicy-proxy-cli-tp-');
  t.after(() => tmp.cleanup());
  writeFileSync(tmp.path('policy.yaml'), `uid: ${process.getuid!()}\n`);
  // The real service would run as uid 4242; whoever listens there now does not.
  writeFileSync(tmp.path('target.yaml'), 'uid: 4242\n');
  let reached = 0;
  const squatter = net.createServer((s) => s.on('data', () => reached++));
  squatter.listen(tmp.path('target.sock'));
  await once(squatter, 'listening');
  t.after(() => closeServer(squatter));
  const proxy = run(process.execPath, [
    CLI,
    'proxy',
    '--listen',
    tmp.path('p.sock'),
    '--to',
    tmp.path('target.sock'),
    '--policy',
    tmp.path('policy.yaml'),
    '--target-policy',
    tmp.path('target.yaml'),
  ]);
  t.after(() => proxy.kill('SIGKILL'));
  const stderrLine = stderrOf(proxy);
  await stderrLine(/listening on .*p\.sock/);
  const client = await nodeClient(tmp.path('p.sock'), { send: 'secret' }).output();
  assert.equal(client.stdout, '');
  await stderrLine(/target .*target\.sock failed the target policy \(server pid=\d+ uid=\d+\) for pid=\d+ uid=\d+: [^\n]*4242[^\n]*\n/);
  assert.equal(reached, 0, 'the squatter read nothing');
  proxy.kill('SIGTERM');
  assert.equal((await proxy.output()).code, 0);
});
