/**
 * Shared-secret key files. Reading opens without following symlinks and checks the opened
 * descriptor (not the path, which could be swapped between a check and the open): a
 * regular file, owned by our effective uid or root, with no group or other permission
 * bits. Writing creates the file with O_EXCL and mode 0600 in the same system call, so
 * there is no moment when it exists with looser permissions.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { ErrorCode, SecpolicyError } from '../errors.js';
import { formatMode } from '../native/index.js';

/** Shortest key accepted, in bytes (docs/protocol.md). */
export const MIN_KEY_LENGTH = 16;
/** Bytes of randomness in a generated key. */
export const GENERATED_KEY_BYTES = 32;
/** A key file larger than this is not a key file. */
const MAX_KEY_FILE_SIZE = 64 * 1024;

function keyFileError(path: string, message: string, cause?: unknown): SecpolicyError {
  return new SecpolicyError(ErrorCode.KEY_FILE, `key file ${JSON.stringify(path)}: ${message}`, {
    path,
    ...(cause !== undefined && { cause }),
  });
}

/** Refuses a key shorter than {@link MIN_KEY_LENGTH} with ERR_SECPOLICY_WEAK_SECRET. */
export function checkKeyLength(key: Uint8Array, where: string): void {
  if (key.length < MIN_KEY_LENGTH) {
    throw new SecpolicyError(
      ErrorCode.WEAK_SECRET,
      `${where}: a shared secret must be at least ${MIN_KEY_LENGTH} bytes long (it has ${key.length})`,
    );
  }
}

/**
 * Reads a key file: its content with one trailing newline stripped. Throws
 * ERR_SECPOLICY_KEY_FILE when the file is unsafe or unreadable, ERR_SECPOLICY_WEAK_SECRET
 * when the key is shorter than 16 bytes. Synchronous on purpose: it runs once per
 * handshake, and four thread-pool round trips cost more (~0.3 ms measured) than the
 * handful of system calls on a local file they would wrap.
 */
export function readKeyFile(path: string): Buffer {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted at the path must not hang the open.
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NOCTTY | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw keyFileError(path, code === 'ELOOP' ? 'is a symbolic link (refused)' : `cannot be opened (${code ?? 'error'})`, e);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw keyFileError(path, 'is not a regular file');
    const euid = process.geteuid!();
    if (st.uid !== euid && st.uid !== 0) throw keyFileError(path, `is owned by uid ${st.uid}, not by uid ${euid} or root`);
    if ((st.mode & 0o077) !== 0)
      throw keyFileError(path, `has mode ${formatMode(st.mode & 0o777)}: group and other permission bits must be clear (chmod 600)`);
    if (st.size > MAX_KEY_FILE_SIZE) throw keyFileError(path, `is ${st.size} bytes, more than a key file holds`);
    const content = readFileSync(fd);
    const key = content.length > 0 && content[content.length - 1] === 0x0a ? content.subarray(0, content.length - 1) : content;
    checkKeyLength(key, `key file ${JSON.stringify(path)}`);
    return key;
  } catch (e) {
    if (e instanceof SecpolicyError) throw e;
    throw keyFileError(path, `cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`, e);
  } finally {
    closeSync(fd);
  }
}

/** A fresh key file's content: 32 random bytes as 64 hex digits and a newline. */
export function generateKey(): string {
  return `${randomBytes(GENERATED_KEY_BYTES).toString('hex')}\n`;
}

/**
 * Writes a fresh key file: 32 random bytes as 64 hex digits and a newline (the key is
 * those 64 ASCII characters). Created with O_CREAT|O_EXCL and mode 0600; an existing file
 * (or symlink) at the path is never overwritten: ERR_SECPOLICY_FILE_EXISTS.
 */
export async function writeKeyFile(path: string): Promise<void> {
  let handle;
  try {
    handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST')
      throw new SecpolicyError(ErrorCode.FILE_EXISTS, `${JSON.stringify(path)} already exists; a key file is never overwritten`, {
        path,
        cause: e,
      });
    throw keyFileError(path, `cannot be created (${code ?? 'error'})`, e);
  }
  try {
    // The umask can only clear bits of 0600; make the mode exact anyway.
    await handle.chmod(0o600);
    await handle.writeFile(generateKey());
    await handle.sync();
  } catch (e) {
    // Leave no empty key file behind: it would make the next keygen refuse.
    await unlink(path).catch(() => {});
    throw keyFileError(path, `cannot be written (${(e as NodeJS.ErrnoException).code ?? 'error'})`, e);
  } finally {
    await handle.close();
  }
}
