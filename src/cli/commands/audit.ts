/** `secpolicy audit`: every listening UNIX socket on the host, who holds it, and findings. */
import { Option, type Command } from 'commander';
import { audit, type SocketReport } from '../../audit/index.js';
import { SEVERITIES, severityRank } from '../../audit/index.js';
import { colorsFor, formatMode, json, severityStyle, table, widthOf, type Column } from '../output.js';

/** Options of the audit command as commander parses them. */
interface AuditFlags {
  json?: boolean;
  failOn?: string;
  quiet?: boolean;
  ignore: string[];
}

/**
 * A matcher for `--ignore`: a path, or a glob where `*` and `?` stay within one path
 * name and `**` spans any number of them (`/run/user/**`, `/tmp/app-*.sock`, `@*` for
 * every abstract socket). The whole path must match.
 */
export function ignoreMatcher(patterns: readonly string[]): (path: string) => boolean {
  const res = patterns.map((p) => {
    let re = '';
    for (let i = 0; i < p.length; i++) {
      const c = p[i]!;
      if (c === '*' && p[i + 1] === '*') {
        // `/**/` also matches a single slash, and a trailing `/**` everything under the directory.
        if (p[i + 2] === '/') {
          re += '(?:.*/)?';
          i += 2;
        } else {
          re += '.*';
          i += 1;
        }
      } else if (c === '*') re += '[^/]*';
      else if (c === '?') re += '[^/]';
      else re += c.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
    }
    return new RegExp(`^${re}$`, 's');
  });
  return (path) => res.some((re) => re.test(path));
}

// Below this the scan is over before a progress line would be read.
const PROGRESS_AFTER_MS = 300;

/** Registers `secpolicy audit`. */
export function registerAudit(program: Command): void {
  program
    .command('audit')
    .description('List every listening UNIX socket on the host, the processes holding it, and findings worth attention.')
    .option('--json', 'print the report as JSON (an array of sockets)')
    .addOption(new Option('--fail-on <severity>', 'exit 1 when any finding is at or above this severity').choices([...SEVERITIES]))
    .option('-q, --quiet', 'no progress line while /proc is scanned')
    .option(
      '--ignore <path|glob>',
      'leave out sockets at this path or matching this glob (* and ? within a name, ** across names); repeatable',
      (value: string, list: string[]) => [...list, value],
      [] as string[],
    )
    .action(async (flags: AuditFlags) => {
      const onProgress = flags.quiet ? undefined : progress(process.stderr);
      const all = await audit(onProgress ? { onProgress } : {});
      const ignored = ignoreMatcher(flags.ignore);
      const reports = all.filter((r) => !ignored(r.path));
      process.stdout.write(flags.json ? json(reports) : render(reports, all.length - reports.length));
      if (flags.failOn !== undefined) {
        const bar = severityRank(flags.failOn);
        if (reports.some((r) => r.findings.some((f) => severityRank(f.severity) >= bar))) process.exitCode = 1;
      }
    });
}

/**
 * A progress reporter that keeps one rewritten line on a terminal, shown only once the
 * scan has taken PROGRESS_AFTER_MS and cleared at the end; none when `stream` is not a TTY.
 */
export function progress(stream: { isTTY?: boolean; write(text: string): unknown }): ((done: number, total: number) => void) | undefined {
  if (!stream.isTTY) return undefined;
  const start = Date.now();
  let shown = false;
  return (done, total) => {
    if (done >= total) {
      if (shown) stream.write('\r\x1b[K');
      return;
    }
    if (Date.now() - start < PROGRESS_AFTER_MS) return;
    shown = true;
    stream.write(`\r\x1b[Kscanning /proc: ${done}/${total} processes`);
  };
}

function holderText(r: SocketReport): string {
  const h = r.holders[0];
  if (!h) return '-';
  const who = `${h.pid} ${h.secpolicy ? `secpolicy ${h.secpolicy}` : (h.comm ?? '?')}`;
  return r.holders.length > 1 ? `${who} +${r.holders.length - 1}` : who;
}

/** The human report: a table of sockets, a table of findings (most severe first), a summary; each fits the width. */
function render(reports: SocketReport[], ignored: number): string {
  const colors = colorsFor(process.stdout);
  const width = widthOf(process.stdout);
  const sockets: Column<SocketReport>[] = [
    { header: 'SEVERITY', value: (r) => r.severity ?? '-', style: (t, r, c) => (r.severity ? severityStyle(r.severity, c)(t) : t) },
    { header: 'PATH', value: (r) => r.path, flex: true, keep: true },
    { header: 'MODE', value: (r) => (r.mode === undefined ? '-' : formatMode(r.mode)) },
    { header: 'HOLDER', value: holderText, flex: true },
  ];
  const found = reports.flatMap((r) => r.findings.map((f) => ({ ...f, path: r.path })));
  found.sort((a, b) => severityRank(b.severity) - severityRank(a.severity));
  const findings: Column<(typeof found)[number]>[] = [
    { header: 'SEVERITY', value: (f) => f.severity, style: (t, f, c) => severityStyle(f.severity, c)(t) },
    { header: 'CODE', value: (f) => f.code },
    { header: 'SOCKET AND FINDING', value: (f) => `${f.path}: ${f.message}`, flex: true, keep: true },
  ];
  const counts = SEVERITIES.map((s) => [s, found.filter((f) => f.severity === s).length] as const).filter(([, n]) => n > 0);
  const summary =
    `${reports.length} listening socket${reports.length === 1 ? '' : 's'}${ignored ? ` (${ignored} ignored)` : ''}; ` +
    (counts.length
      ? `findings: ${counts
          .reverse()
          .map(([s, n]) => `${n} ${s}`)
          .join(', ')}`
      : 'no findings');
  let out = table(sockets, reports, { width, colors });
  if (found.length) out += `\n${table(findings, found, { width, colors })}`;
  return `${out}\n${summary}\n`;
}
