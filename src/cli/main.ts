#!/usr/bin/env node
/**
 * The `secpolicy` command. Each subcommand lives in ./commands/ and is listed in
 * {@link COMMANDS}; only the module of the command being run is imported, so that
 * `--version` or `keygen` do not load the FFI, the policy engine or the audit.
 */
import * as module from 'node:module';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// Node >= 22.1 caches compiled modules on disk; a later start skips the compile step.
// Guarded: older Nodes have no such function, and a read-only cache directory is no error.
try {
  (module as { enableCompileCache?: () => unknown }).enableCompileCache?.();
} catch {
  // Start without the cache.
}

const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8')) as { version: string };

const isEntry = Boolean(process.argv[1]) && fileURLToPath(import.meta.url) === realpathSync(process.argv[1]!);
// `secpolicy --version` alone is answered before the argument parser is even loaded.
if (isEntry && process.argv.length === 3 && (process.argv[2] === '--version' || process.argv[2] === '-V')) {
  process.stdout.write(`${pkg.version}\n`);
  process.exit(0);
}

const { Command, CommanderError } = await import('commander');
const { errorLine, usageLine } = await import('./output.js');
type Command = import('commander').Command;

/** Exit codes: 0 success, 1 denied or findings, 2 usage or runtime error. */
export const Exit = Object.freeze({ OK: 0, DENIED: 1, ERROR: 2 });

/** A command registration: adds the command (its options and action) to the program. */
export type Register = (program: Command) => void;

/** Every subcommand, by name, and how to load its module (imported only when needed). */
export const COMMANDS: Readonly<Record<string, () => Promise<Register>>> = Object.freeze({
  audit: async () => (await import('./commands/audit.js')).registerAudit,
  inspect: async () => (await import('./commands/inspect.js')).registerInspect,
  check: async () => (await import('./commands/check.js')).registerCheck,
  keygen: async () => (await import('./commands/keygen.js')).registerKeygen,
  proxy: async () => (await import('./commands/proxy.js')).registerProxy,
  gateway: async () => (await import('./commands/gateway.js')).registerGateway,
  explain: async () => (await import('./commands/explain.js')).registerExplain,
  convert: async () => (await import('./commands/convert.js')).registerConvert,
});

/**
 * The program with the commands `argv` needs: only the named command when there is one
 * (its own `--help` included), every command otherwise (`--help`, a usage error), none
 * for `--version`.
 */
export async function buildProgram(argv: string[] = process.argv): Promise<Command> {
  const program = new Command('secpolicy')
    .description('Verify who is on the other end of a UNIX domain socket.')
    .version(pkg.version, '-V, --version')
    .configureOutput({ outputError: (message, write) => write(usageLine(message)) })
    .exitOverride();
  const args = argv.slice(2);
  const first = args[0];
  const named = first !== undefined && Object.hasOwn(COMMANDS, first) ? [first] : undefined;
  const version = args.length === 1 && (first === '--version' || first === '-V');
  const names = named ?? (version ? [] : Object.keys(COMMANDS));
  for (const register of await Promise.all(names.map((name) => COMMANDS[name]!()))) register(program);
  return program;
}

/** Runs the CLI; resolves with the exit code. */
export async function main(argv: string[] = process.argv): Promise<number> {
  try {
    const program = await buildProgram(argv);
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : Exit.OK;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version exit through here with code 0.
      return e.exitCode === 0 ? Exit.OK : Exit.ERROR;
    }
    process.stderr.write(errorLine(e));
    return Exit.ERROR;
  }
}

if (isEntry) process.exitCode = await main();
