/** `secpolicy keygen <file>`: a fresh key for the shared-secret challenge. */
import type { Command } from 'commander';
import { GENERATED_KEY_BYTES, writeKeyFile } from '../../challenge/key-file.js';

/** Registers `secpolicy keygen`. */
export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description(
      `Write a fresh ${GENERATED_KEY_BYTES}-byte key for sharedSecret({ keyFile }) as 64 hex digits, mode 0600; an existing file is never overwritten.`,
    )
    .argument('<file>', 'the key file to create')
    .action(async (file: string) => {
      await writeKeyFile(file);
      process.stdout.write(`wrote a ${GENERATED_KEY_BYTES}-byte key to ${file} (mode 0600)\n`);
    });
}
