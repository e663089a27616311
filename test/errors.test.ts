/**
 * The error catalogue is checked: every ErrorCode is documented in docs/errors.md, every
 * documented code exists, and no code is used in src/ without being in the catalogue.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, SecpolicyError, isSecpolicyError } from '../src/index.js';
import { describe, invalidArg } from '../src/errors.js';

// dist/test/errors.test.js -> the repository root.
const root = fileURLToPath(new URL('../../', import.meta.url));
const CODE = /ERR_SECPOLICY_[A-Z0-9_]+/g;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

test('every ErrorCode is documented in docs/errors.md, and every documented code exists', () => {
  const doc = readFileSync(join(root, 'docs/errors.md'), 'utf8');
  // A code counts as documented when it opens a row of the table.
  const documented = new Set([...doc.matchAll(/^\|\s*`(ERR_SECPOLICY_[A-Z0-9_]+)`\s*\|/gm)].map((m) => m[1]!));
  const defined = new Set(Object.values(ErrorCode));
  for (const code of defined) assert.ok(documented.has(code), `${code} is missing from docs/errors.md`);
  for (const code of documented)
    assert.ok(defined.has(code as ErrorCode), `docs/errors.md lists ${code}, which src/errors.ts does not define`);
  for (const code of doc.match(CODE) ?? []) assert.ok(defined.has(code as ErrorCode), `docs/errors.md mentions unknown ${code}`);
});

test('every ERR_SECPOLICY_ literal in src/ is in the catalogue', () => {
  const defined = new Set<string>(Object.values(ErrorCode));
  const files = sourceFiles(join(root, 'src'));
  assert.ok(files.length > 10, 'found the sources');
  // String literals only: a comment may sketch a placeholder such as ERR_SECPOLICY_X.
  const literal = /['"`](ERR_SECPOLICY_[A-Z0-9_]+)['"`]/g;
  for (const file of files) {
    for (const [, code] of readFileSync(file, 'utf8').matchAll(literal)) {
      assert.ok(defined.has(code!), `${file.slice(root.length)} uses ${code}, which is not in ErrorCode`);
    }
  }
});

test('ErrorCode keys match their values and the catalogue is frozen', () => {
  assert.equal(Object.isFrozen(ErrorCode), true);
  for (const [key, value] of Object.entries(ErrorCode)) assert.equal(value, `ERR_SECPOLICY_${key}`);
});

test('SecpolicyError carries code, cause and extra fields', () => {
  const cause = new Error('errno');
  const e = new SecpolicyError(ErrorCode.NATIVE, 'getsockopt failed', { cause, errno: 9, syscall: 'getsockopt' });
  assert.ok(e instanceof Error);
  assert.equal(e.name, 'SecpolicyError');
  assert.equal(e.code, 'ERR_SECPOLICY_NATIVE');
  assert.equal(e.cause, cause);
  assert.equal(e.errno, 9);
  assert.equal(e.syscall, 'getsockopt');
  assert.equal(isSecpolicyError(e), true);
  assert.equal(Object.keys(e).includes('cause'), false, 'cause is the standard Error option, not a copied field');
});

test('isSecpolicyError works across copies of the package (registered symbol brand), and only for branded values', () => {
  // What a second copy of the package would make: a different class, the same Symbol.for brand.
  class OtherCopyError extends Error {
    code = 'ERR_SECPOLICY_DENIED';
  }
  const foreign = new OtherCopyError('denied');
  Object.defineProperty(foreign, Symbol.for('secpolicy.error'), { value: true });
  assert.equal(isSecpolicyError(foreign), true);
  assert.equal(foreign instanceof SecpolicyError, false);

  for (const value of [
    new Error('x'),
    { code: 'ERR_SECPOLICY_DENIED' },
    null,
    undefined,
    'ERR_SECPOLICY_DENIED',
    1,
    { [Symbol('secpolicy.error')]: true },
  ]) {
    assert.equal(isSecpolicyError(value), false, String(value));
  }
});

test('invalidArg names the argument and renders values safely', () => {
  const e = invalidArg('options.ttl', 'a number', 'x'.repeat(100));
  assert.equal(e.code, ErrorCode.INVALID_ARG);
  assert.equal((e as unknown as { argument: string }).argument, 'options.ttl');
  assert.match(e.message, /^The "options.ttl" argument must be a number\. Received a string of length 100$/);
  assert.equal(describe(new Uint8Array(32)), 'a Uint8Array of length 32', 'never the bytes of a secret');
  assert.equal(
    describe(() => 1),
    'function (anonymous)',
  );
  assert.equal(describe(5n), 'bigint 5');
  assert.equal(describe([1, 2]), 'an array of length 2');
  assert.equal(describe(Object.create(null)), 'an instance of Object');
});
