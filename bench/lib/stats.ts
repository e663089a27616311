/**
 * Shared benchmark utilities: repeated rounds, medians, percentiles and one printed line
 * per figure, set beside an anchor measured in the same run.
 *
 * ```ts
 * const anchor = await rounds(15, () => timePerOp(10_000, () => rawCall()));
 * const figure = await rounds(15, () => timePerOp(10_000, () => policy.applySync(s)));
 * report('applySync', figure, { name: 'getsockopt', samples: anchor });
 * ```
 */
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

/** The value at quantile `q` (0..1) of `samples`, by linear interpolation; NaN when empty. */
export function percentile(samples: readonly number[], q: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const pos = Math.min(Math.max(q, 0), 1) * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** The median of `samples`; NaN when empty. */
export function median(samples: readonly number[]): number {
  return percentile(samples, 0.5);
}

/**
 * Runs `round` `n` times (after `warmup` unrecorded runs) and returns what each recorded
 * round returned: usually one figure per round (e.g. µs per operation), so that the
 * median of rounds shrugs off the noise of a shared machine.
 */
export async function rounds(n: number, round: () => number | Promise<number>, warmup = 1): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await round();
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await round());
  return out;
}

/** Microseconds per call of `fn` over `iterations` back-to-back synchronous calls. */
export function timePerOp(iterations: number, fn: () => unknown): number {
  const start = performance.now();
  for (let i = 0; i < iterations; i++) fn();
  return ((performance.now() - start) * 1000) / iterations;
}

/** Microseconds per call of the async `fn` over `iterations` sequential awaited calls. */
export async function timePerOpAsync(iterations: number, fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < iterations; i++) await fn();
  return ((performance.now() - start) * 1000) / iterations;
}

/** A number with 3 significant digits, without exponent notation for ordinary figures. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toPrecision(3);
}

/** The anchor a figure is compared with: its name and its samples from the same run. */
export interface Anchor {
  name: string;
  samples: readonly number[];
}

/** Options of `report()`. */
export interface ReportOptions {
  /** Unit printed after the figures. @default 'µs' */
  unit?: string;
  /** What one sample is, for the count printed. @default 'rounds' */
  samples?: string;
}

/**
 * One line: `name: median <m> unit (p10 <a>, p90 <b>, n rounds)`, and when an anchor is
 * given, `vs <anchor> <m'> unit = <ratio>x` (figure median / anchor median).
 * Returns the line, which is also printed to stdout.
 */
export function formatLine(name: string, samples: readonly number[], anchor?: Anchor, options: ReportOptions = {}): string {
  const unit = options.unit ?? 'µs';
  const m = median(samples);
  let line = `${name}: median ${formatNumber(m)} ${unit} (p10 ${formatNumber(percentile(samples, 0.1))}, p90 ${formatNumber(percentile(samples, 0.9))}, ${samples.length} ${options.samples ?? 'rounds'})`;
  if (anchor) {
    const a = median(anchor.samples);
    line += ` vs ${anchor.name} ${formatNumber(a)} ${unit} = ${formatNumber(m / a)}x`;
  }
  return line;
}

/** Prints `formatLine(...)` and returns it. */
export function report(name: string, samples: readonly number[], anchor?: Anchor, options: ReportOptions = {}): string {
  const line = formatLine(name, samples, anchor, options);
  console.log(line);
  return line;
}

/**
 * Whether the module with this `import.meta.url` is the process's entry script, so a bench
 * file can both export `run()` for bench/run.ts and run itself when executed directly:
 * `if (isMain(import.meta.url)) await run();`
 */
export function isMain(moduleUrl: string): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  const self = fileURLToPath(moduleUrl);
  return self === entry || self === `${entry}.js`;
}
