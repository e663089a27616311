#!/usr/bin/env node
/** The `secpolicy` command. Each subcommand lives in ./commands/ and registers itself here. */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { errorLine, usageLine } from './output.js';
import { registerAudit } from './commands/audit.js';
import { registerCheck } from './commands/check.js';
import { registerInspect } from './commands/inspect.js';
import { registerKeygen } from './commands/keygen.js';
import { registerProxy } from './commands/proxy.js';
import { registerGateway } from './commands/gateway.js';

const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8')) as { version: string };

/** Exit codes (API.md): 0 success, 1 denied or findings, 2 usage or runtime error. */
export const Exit = Object.freeze({ OK: 0, DENIED: 1, ERROR: 2 });

export function buildProgram(): Command {
  const program = new Command('secpolicy')
    .description('Verify who is on the other end of a UNIX domain socket.')
    .version(pkg.version, '-V, --version')
    .configureOutput({ outputError: (message, write) => write(usageLine(message)) })
    .exitOverride();
  for (const register of commands) register(program);
  return program;
}

/** Command registrations: each command module adds itself to this list. */
const commands: Array<(program: Command) => void> = [
  registerAudit,
  registerInspect,
  registerCheck,
  registerKeygen,
  registerProxy,
  registerGateway,
];

/** Runs the CLI; resolves with the exit code. */
export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  try {
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

if (process.argv[1] && fileURLToPath(import.meta.url) === (await import('node:fs')).realpathSync(process.argv[1])) {
  process.exitCode = await main();
}
