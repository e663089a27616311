// Runs a command (the test suite) under c8 and prints the coverage of src/. The raw V8
// coverage goes to a fresh temporary directory that every user may write to (sticky, like
// /tmp): tests start peers as other users, and a peer that could not write its coverage
// would print an error on the stderr the test reads.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const c8 = join(dirname(require.resolve('c8/package.json')), 'bin', 'c8.js');
const raw = mkdtempSync(join(tmpdir(), 'secpolicy-coverage-'));
chmodSync(raw, 0o1777);
const args = [
  c8,
  '--clean=false',
  `--temp-directory=${raw}`,
  '--include=dist/src/**',
  '--reporter=text-summary',
  '--reporter=json-summary',
  '--report-dir=coverage',
  ...process.argv.slice(2),
];
const result = spawnSync(process.execPath, args, { stdio: 'inherit' });
rmSync(raw, { recursive: true, force: true });
process.exit(result.status ?? 1);
