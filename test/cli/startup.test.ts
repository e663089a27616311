/** Start-up: each command loads only its own modules (checked by making the others fail to load). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { run } from '../helpers/index.js';
import { CLI } from './cli.js';

// A module hook that refuses to resolve any specifier matching SECPOLICY_TEST_REFUSE.
const HOOK = `data:text/javascript,${encodeURIComponent(`
import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(
  'const refuse = new RegExp(process.env.SECPOLICY_TEST_REFUSE); export async function resolve(s, c, n) { if (refuse.test(s)) throw new Error("refused to load " + s); return n(s, c); }',
)}));
`)}`;

/** Runs the CLI with the modules matching `refuse` unloadable. */
function cliWithout(refuse: string, args: string[]) {
  const child = run(process.execPath, ['--import', HOOK, CLI, ...args], { env: { ...process.env, SECPOLICY_TEST_REFUSE: refuse } });
  child.stdin!.end();
  return child.output();
}

test('--version loads neither the argument parser nor any command', async () => {
  const r = await cliWithout('^commander$|/commands/', ['--version']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^\d+\.\d+\.\d+/);
});

test('a command loads only its own module', async () => {
  const keygen = await cliWithout('/commands/(audit|inspect|check|proxy)\\.js$|/audit/|/proxy/', ['keygen', '-']);
  assert.equal(keygen.code, 0, keygen.stderr);
  assert.match(keygen.stdout, /^[0-9a-f]{64}\n$/);
  const help = await cliWithout('/commands/(audit|inspect|check|proxy)\\.js$', ['keygen', '--help']);
  assert.equal(help.code, 0, help.stderr);
  // The hook does refuse: the same command fails when its own module is refused.
  const refused = await cliWithout('/commands/keygen\\.js$', ['keygen', '-']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /refused to load/);
});
