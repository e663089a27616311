/** The documentation stands alone: its code runs, its links resolve, and it names no file outside the repo. */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { needRoot, run, tempDir } from '../helpers/index.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

function filesUnder(dir: string, ext: RegExp): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && ext.test(e.name))
    .map((e) => join(e.parentPath ?? (e as unknown as { path: string }).path, e.name).slice(ROOT.length));
}

test(
  'README quick start: the code block runs as pasted (as root) and ends on its own',
  { timeout: 60_000, skip: needRoot() },
  async (t) => {
    const readme = read('README.md');
    const section = readme.split(/^## Quick start$/m)[1]!;
    const code = /```ts\n([^]*?)```/.exec(section)?.[1];
    assert.ok(code, 'a ts block under "## Quick start"');
    const tmp = tempDir('secpolicy-quickstart-');
    t.after(() => tmp.cleanup());
    // `import 'secpolicy'` resolves to this checkout, as it would to the installed package.
    mkdirSync(tmp.path('node_modules'));
    symlinkSync(ROOT, tmp.path('node_modules/secpolicy'));
    writeFileSync(tmp.path('quickstart.mjs'), code);
    mkdirSync(tmp.path('tmp'));
    const r = await run(process.execPath, [tmp.path('quickstart.mjs')], {
      cwd: tmp.dir,
      env: { ...process.env, TMPDIR: tmp.path('tmp') },
    }).output();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'verified\nhello root\n');
    const made = readdirSync(tmp.path('tmp'));
    assert.equal(made.length, 1, 'one temporary directory');
    assert.deepEqual(readdirSync(tmp.path(`tmp/${made[0]}`)), [], 'closing the servers removed their socket files');
  },
);

test('src/, docs/ and README name no file outside the repository', () => {
  const files = ['README.md', ...filesUnder('docs', /\.md$/), ...filesUnder('src', /\.ts$/)];
  for (const file of files) {
    const text = read(file);
    assert.doesNotMatch(text, /\b(DESIGN|API|PROTOCOL|STYLE)\.md\b/, file);
    assert.doesNotMatch(text, /\bthreat \d+\b/i, `${file}: a numbered threat of a document not in the repo`);
  }
});

test('every relative link in README and docs/ points at a file in the repo', () => {
  for (const file of ['README.md', ...filesUnder('docs', /\.md$/)]) {
    for (const [, target] of read(file).matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue;
      const path = resolve(ROOT, dirname(file), target!);
      assert.ok(existsSync(path), `${file} links to ${target}, which does not exist`);
    }
  }
});
