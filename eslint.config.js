// ESLint flat config: recommended rules for TypeScript, plus the project's layering rules.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import boundaries from 'eslint-plugin-boundaries';

/** koffi is reached only through src/native/, which gives the rest of the code typed functions. */
const koffiOutsideNative = {
  paths: [{ name: 'koffi', message: 'Only src/native/ imports koffi; use the typed functions it exports.' }],
  patterns: [{ group: ['koffi/*'], message: 'Only src/native/ imports koffi.' }],
};

/** A net.Socket's handle (`_handle.fd`) is read in exactly one place, inside src/native/. */
const handleOutsideNative = [
  {
    selector: "MemberExpression[property.name='_handle']",
    message: 'Only src/native/ reads a socket handle; use the fd helper it exports.',
  },
  {
    selector: "MemberExpression[property.value='_handle']",
    message: 'Only src/native/ reads a socket handle; use the fd helper it exports.',
  },
];

/**
 * The rooms of src/, lowest first. A room may import from rooms below it, never above or
 * beside it, and only through their front door (`index.ts`). The files directly in src/ are
 * shared by every room (errors, escaping, argument validation, diagnostics channels), and
 * `src/index.ts`, the package's public entry point, names what users may import.
 */
const LAYERS = [['native'], ['identity'], ['challenge'], ['policy'], ['net'], ['systemd'], ['audit', 'proxy', 'gateway'], ['cli']];
const rank = new Map(LAYERS.flatMap((rooms, i) => rooms.map((room) => [room, i])));
const rooms = [...rank.keys()];
const below = (room) => rooms.filter((other) => rank.get(other) < rank.get(room));
const roomOrder = {
  files: ['src/**/*.ts'],
  plugins: { boundaries },
  settings: {
    'import/resolver': { typescript: { project: './tsconfig.json' } },
    'boundaries/elements': [...rooms.map((room) => ({ type: room, pattern: `src/${room}` }))],
  },
  rules: {
    'boundaries/dependencies': [
      'error',
      {
        default: 'disallow',
        message:
          'A room imports only from rooms below it (native < identity < challenge < policy < net < systemd < daemons < cli), through their index.ts',
        policies: [
          ...rooms.map((room) => ({
            from: { element: { type: room } },
            allow: { to: { element: { types: below(room), fileInternalPath: 'index.ts' } } },
          })),
        ],
      },
    ],
  },
};

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'test/challenge/c/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2023, sourceType: 'module' },
    rules: {
      // Style findings warn (code others are writing right now still lints); layering rules fail.
      // A variable that a hook registered earlier reads stays `let`.
      'prefer-const': ['warn', { ignoreReadBeforeAssign: true }],
      '@typescript-eslint/no-explicit-any': 'warn',
      'no-useless-assignment': 'warn',
      '@typescript-eslint/no-unused-vars': ['warn', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      'no-restricted-imports': ['error', koffiOutsideNative],
      'no-restricted-syntax': ['error', ...handleOutsideNative],
    },
  },
  roomOrder,
  {
    files: ['src/native/**'],
    rules: { 'no-restricted-imports': 'off', 'no-restricted-syntax': 'off' },
  },
  {
    // Examples are what users copy: they use the package's public entry point only.
    files: ['examples/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          ...koffiOutsideNative,
          patterns: [
            ...koffiOutsideNative.patterns,
            {
              regex: '^\\.\\.?/.*(src|dist)/(?!index(\\.js)?$)',
              message: "Examples import the public entry point ('secpolicy' or src/index.js), not modules inside src/.",
            },
            { group: ['secpolicy/*'], message: "Examples import 'secpolicy' itself, not a subpath." },
          ],
        },
      ],
    },
  },
  {
    // Plain JavaScript (scripts, CI helpers) runs on Node: its globals are defined.
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    languageOptions: {
      globals: Object.fromEntries(
        ['process', 'console', 'Buffer', 'URL', 'URLSearchParams', 'setTimeout', 'clearTimeout', 'setImmediate', 'structuredClone'].map(
          (name) => [name, 'readonly'],
        ),
      ),
    },
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', module: 'writable', __dirname: 'readonly' } },
  },
);
