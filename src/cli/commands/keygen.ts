/** `secpolicy keygen <file>`: a fresh key for the shared-secret challenge. */
import type { Command } from 'commander';
import { escapeText } from '../../escape.js';
import { GENERATED_KEY_BYTES, generateKey, writeKeyFile } from '../../challenge/index.js';

/** Options of the keygen command as commander parses them. */
interface KeygenFlags {
  quiet?: boolean;
}

/** Registers `secpolicy keygen`. */
export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description(
      `Write a fresh ${GENERATED_KEY_BYTES}-byte key for sharedSecret({ keyFile }) as 64 hex digits, mode 0600; an existing file is never overwritten. "-" writes the key to standard output.`,
    )
    .argument('<file>', 'the key file to create, or - for standard output')
    .option('-q, --quiet', 'print nothing on success')
    .action(async (file: string, flags: KeygenFlags) => {
      if (file === '-') {
        // The key alone, so that it can be piped (umask and mode are then the caller's).
        process.stdout.write(generateKey());
        return;
      }
      await writeKeyFile(file);
      if (!flags.quiet) process.stdout.write(`wrote a ${GENERATED_KEY_BYTES}-byte key to ${escapeText(file)} (mode 0600)\n`);
    });
}
