/**
 * Shared output of the CLI: colour that respects NO_COLOR and non-TTY streams, tables and
 * field lists that stay readable in 80 columns, JSON, and one-line errors carrying the code.
 * Every command prints through these so that all of them look and behave alike.
 */
import pc from 'picocolors';
import stringWidth from 'string-width';
import { escapeText } from '../escape.js';
import { isSecpolicyError } from '../errors.js';

/** The picocolors formatter set (all identity functions when colour is off). */
export type Colors = ReturnType<typeof pc.createColors>;

/** A stream we print to: process.stdout / process.stderr, or anything with `write`. */
export interface OutStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** Width used when the stream is not a terminal: output must read well in 80 columns. */
export const DEFAULT_WIDTH = 80;

/**
 * Whether to colour output on `stream`: never when NO_COLOR is set (https://no-color.org),
 * always when FORCE_COLOR is set to anything but "0", otherwise only on a terminal that is
 * not "dumb". picocolors' own default also turns colour on under CI, which would put
 * escape codes into piped output, so it is decided here instead.
 */
export function colorEnabled(stream: OutStream, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR) return false;
  if (env.FORCE_COLOR && env.FORCE_COLOR !== '0') return true;
  return stream.isTTY === true && env.TERM !== 'dumb';
}

/** Colour formatters for a stream (plain when {@link colorEnabled} says no). */
export function colorsFor(stream: OutStream = process.stdout): Colors {
  return pc.createColors(colorEnabled(stream));
}

/**
 * Columns available on a stream: `COLUMNS` when it is set to a number (so piped output
 * can be made wider or narrower, as with ls), else the terminal's width, else 80; never
 * fewer than 40.
 */
export function widthOf(stream: OutStream = process.stdout, env: NodeJS.ProcessEnv = process.env): number {
  const columns = env.COLUMNS !== undefined && /^\d+$/.test(env.COLUMNS) ? Number(env.COLUMNS) : undefined;
  if (columns !== undefined && columns > 0) return Math.max(40, columns);
  return stream.isTTY && typeof stream.columns === 'number' && stream.columns > 0 ? Math.max(40, stream.columns) : DEFAULT_WIDTH;
}

/** Columns `text` takes on a terminal: East Asian wide characters count two, combining marks none. */
export function displayWidth(text: string): number {
  return stringWidth(text);
}

const graphemes = new Intl.Segmenter();

/**
 * `text` split after each run of slashes (the pieces a path may be broken into without
 * cutting a name), and unless `names` also after underscores (`ROOT_WORLD_ACCESSIBLE`).
 */
function pieces(text: string, names: boolean): string[] {
  return (names ? text.match(/[^/]*\/+|[^/]+/g) : text.match(/[^/_]*[/_]+|[^/_]+/g)) ?? [text];
}

/** The widest piece of `text` that {@link wrap} with `keepNames` never breaks (a word, or a name between slashes). */
export function unbreakableWidth(text: string): number {
  return Math.max(
    0,
    ...text
      .split(/ +/)
      .flatMap((w) => pieces(w, true))
      .map(displayWidth),
  );
}

/**
 * Word-wraps text to `width` display columns. A word longer than a line is broken after a
 * slash (a path: no name in it is cut) or an underscore (unless `keepNames`); only a single
 * piece wider than the whole line is cut between characters, so no line is ever wider than `width`.
 */
export function wrap(text: string, width: number, keepNames = false): string[] {
  const w = Math.max(1, width);
  const lines: string[] = [];
  for (const paragraph of text.split('\n')) {
    let line = '';
    let used = 0;
    // Appends a piece (after `sep` when the line has something), first starting a new line if it would not fit.
    const add = (piece: string, n: number, sep: string): void => {
      if (line && used + sep.length + n > w) {
        lines.push(line);
        line = '';
        used = 0;
      } else if (line) {
        line += sep;
        used += sep.length;
      }
      line += piece;
      used += n;
    };
    for (const word of paragraph.split(/ +/)) {
      const n = displayWidth(word);
      if (n <= w) {
        add(word, n, ' ');
        continue;
      }
      pieces(word, keepNames).forEach((piece, k) => {
        const pn = displayWidth(piece);
        if (pn <= w) return add(piece, pn, k === 0 ? ' ' : '');
        // One name wider than the line: cut between characters.
        if (line) lines.push(line);
        line = '';
        used = 0;
        for (const { segment } of graphemes.segment(piece)) add(segment, displayWidth(segment), '');
      });
    }
    lines.push(line);
  }
  return lines;
}

/** One column of a {@link table}. */
export interface Column<T> {
  /** Header text (printed dim/bold when colour is on). */
  header: string;
  /** The cell text of a row. */
  value: (row: T) => string;
  /** Colours a cell after padding, so escape codes never upset the alignment. */
  style?: (text: string, row: T, colors: Colors) => string;
  /** Right-align (numbers). @default false */
  right?: boolean;
  /** May be narrowed and wrapped when the table is too wide; by default only the last column is. */
  flex?: boolean;
  /**
   * Never narrowed below its widest word or path name (paths then break only after a slash):
   * the table may grow wider than asked rather than cut a name. @default false
   */
  keep?: boolean;
}

/** Options of {@link table} and {@link fields}. */
export interface LayoutOptions {
  /** Total width. @default 80 */
  width?: number;
  /** Colour formatters. @default plain */
  colors?: Colors;
}

const plain = pc.createColors(false);
const GAP = 2;
const MIN_FLEX = 12;
const MIN_ANY = 4;

/**
 * Renders rows as an aligned table no wider than `width`: the flexible columns are
 * narrowed and their cells wrapped onto continuation lines. Returns the text with a
 * trailing newline (empty string for no rows and no header).
 */
export function table<T>(columns: readonly Column<T>[], rows: readonly T[], options: LayoutOptions = {}): string {
  const width = options.width ?? DEFAULT_WIDTH;
  const colors = options.colors ?? plain;
  // Cells come from the system (paths, process names): escaped, so they cannot forge lines.
  const cells = rows.map((row) => columns.map((c) => escapeText(c.value(row))));
  const widths = columns.map((c, i) => Math.max(displayWidth(c.header), ...cells.map((r) => displayWidth(r[i]!))));
  const flex = columns.map((c, i) => c.flex ?? i === columns.length - 1);
  const least = columns.map((c, i) => (c.keep ? Math.max(0, ...cells.map((r) => unbreakableWidth(r[i]!))) : 0));
  let excess = widths.reduce((a, b) => a + b, 0) + GAP * (columns.length - 1) - width;
  // Narrow the widest flexible column first, down to MIN_FLEX; on a very narrow screen,
  // then any column, down to MIN_ANY, unless a name that must stay whole keeps the table
  // too wide anyway (then cutting other columns would only make it harder to read).
  const tightest = least.reduce((sum, l, i) => sum + Math.min(widths[i]!, Math.max(l, MIN_ANY)), 0) + GAP * (columns.length - 1);
  for (const [eligible, floor] of [
    [(i: number) => flex[i]!, MIN_FLEX],
    [() => tightest <= width, MIN_ANY],
  ] as const) {
    while (excess > 0) {
      let widest = -1;
      widths.forEach((w, i) => {
        if (eligible(i) && w > Math.max(floor, least[i]!) && (widest < 0 || w > widths[widest]!)) widest = i;
      });
      if (widest < 0) break;
      const cut = Math.min(excess, widths[widest]! - Math.max(floor, least[widest]!));
      widths[widest]! -= cut;
      excess -= cut;
    }
  }
  const render = (texts: string[], style: (text: string, i: number) => string): string => {
    const wrapped = texts.map((t, i) => wrap(t, widths[i]!, columns[i]!.keep));
    const height = Math.max(...wrapped.map((w) => w.length));
    const lines: string[] = [];
    for (let l = 0; l < height; l++) {
      const parts = columns.map((c, i) => {
        const t = wrapped[i]![l] ?? '';
        // Padding stays outside the escape codes so that trailing blanks can be trimmed.
        const pad = ' '.repeat(Math.max(0, widths[i]! - displayWidth(t)));
        const shown = t ? style(t, i) : t;
        return c.right ? pad + shown : shown + pad;
      });
      lines.push(parts.join(' '.repeat(GAP)).trimEnd());
    }
    return lines.join('\n');
  };
  const out = [
    render(
      columns.map((c) => c.header),
      (t) => colors.bold(t),
    ),
  ];
  rows.forEach((row, r) => out.push(render(cells[r]!, (t, i) => columns[i]!.style?.(t, row, colors) ?? t)));
  return `${out.join('\n')}\n`;
}

/** A labelled value of {@link fields}; an undefined value leaves the line out. */
export type Field = readonly [label: string, value: string | number | undefined, style?: (text: string, colors: Colors) => string];

/**
 * Renders `label  value` lines with the values aligned, wrapping long values under their
 * own column so that nothing is wider than `width`.
 */
export function fields(list: readonly Field[], options: LayoutOptions = {}): string {
  const width = options.width ?? DEFAULT_WIDTH;
  const colors = options.colors ?? plain;
  const shown = list.filter(([, value]) => value !== undefined && value !== '');
  const labelWidth = Math.max(0, ...shown.map(([label]) => label.length)) + GAP;
  const lines: string[] = [];
  for (const [label, value, style] of shown) {
    const wrapped = wrap(escapeText(String(value)), Math.max(MIN_FLEX, width - labelWidth));
    wrapped.forEach((text, i) => {
      const head = i === 0 ? colors.bold(label.padEnd(labelWidth)) : ' '.repeat(labelWidth);
      lines.push(`${head}${style ? style(text, colors) : text}`);
    });
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/** Pretty JSON with a trailing newline, for `--json` output (stable across commands). */
export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

export { formatMode } from '../native/index.js';

/** An id with its name when it has one: `1000 (alice)`. */
export function formatId(id: number | undefined, name: string | undefined): string | undefined {
  if (id === undefined) return undefined;
  return name === undefined ? String(id) : `${id} (${name})`;
}

/** Colours a finding severity: red for high and critical, yellow for medium, dim otherwise. */
export function severityStyle(severity: string, colors: Colors): (text: string) => string {
  if (severity === 'critical' || severity === 'high') return colors.red;
  if (severity === 'medium' || severity === 'warning') return colors.yellow;
  return colors.dim;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ');
}

/** Code given to errors that are not SecpolicyErrors (a bug or an unexpected system error). */
const UNEXPECTED = 'ERR_SECPOLICY_NATIVE';

/**
 * The one-line error the CLI prints, `secpolicy: <code>: message` (with the cause's
 * message appended when it adds something), always on a single line.
 */
export function errorLine(error: unknown): string {
  const code = isSecpolicyError(error) ? error.code : UNEXPECTED;
  let message = error instanceof Error ? error.message : String(error);
  const cause = (error as { cause?: unknown })?.cause;
  // An excerpt of the input (a policy file's line and a caret under the column) follows
  // the line, indented; it already says all the cause would.
  const snippet = (error as { snippet?: unknown })?.snippet;
  // The cause adds the errno text when the message did not already name it.
  const causeCode = (cause as { code?: unknown })?.code;
  const named = typeof causeCode === 'string' && message.includes(causeCode);
  if (typeof snippet !== 'string' && cause instanceof Error && cause.message && !named && !message.includes(cause.message))
    message += `: ${cause.message}`;
  const excerpt =
    typeof snippet === 'string'
      ? snippet
          .split('\n')
          .map((line) => `  ${line}\n`)
          .join('')
      : '';
  return `secpolicy: ${code}: ${escapeText(message)}\n${excerpt}`;
}

/** The one-line form of a usage error reported by the argument parser. */
export function usageLine(commanderMessage: string): string {
  const message = oneLine(commanderMessage.trim()).replace(/^error:\s*/, '');
  return `secpolicy: ERR_SECPOLICY_INVALID_ARG: ${message} (see --help)\n`;
}
