// Every installed package (dev ones included) must accept the Node that runs this script:
// a dependency that declares a higher engine than CI tests on is a failure here, not a
// surprise for a user. Run once per Node version in .ci/run.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../package.json', import.meta.url));
const semver = require('semver');
const lock = JSON.parse(readFileSync(new URL('../package-lock.json', import.meta.url), 'utf8'));
const bad = [];
for (const [path, entry] of Object.entries(lock.packages)) {
  const range = entry.engines?.node;
  if (!range || entry.optional) continue;
  if (!semver.satisfies(process.versions.node, range, { includePrerelease: true }))
    bad.push(`${path || '(this package)'}@${entry.version}: node ${range}`);
}
if (bad.length) {
  console.error(`engines-check: Node ${process.versions.node} is outside the declared engines of:\n  ${bad.join('\n  ')}`);
  process.exit(1);
}
console.log(`engines-check: every installed package accepts Node ${process.versions.node}`);
