/** File modes as text; free of the FFI, so that the CLI can print one without loading it. */

/** A file mode's permission bits as four octal digits, for messages: `0660`, `01777`. */
export function formatMode(mode: number): string {
  return `0${(mode & 0o7777).toString(8).padStart(3, '0')}`;
}
