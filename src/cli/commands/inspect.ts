/** `secpolicy inspect <path>`: who listens on a socket, and what its file says. */
import { Option, type Command } from 'commander';
import { inspect, type PeerReport } from '../../audit/index.js';
import { SEVERITIES, severityRank } from '../../audit/index.js';
import { DEFAULT_TIMEOUT } from '../../policy/index.js';
import { milliseconds } from '../args.js';
import { colorsFor, fields, formatId, formatMode, json, severityStyle, table, widthOf, type Colors, type Field } from '../output.js';

/** Options of the inspect command as commander parses them. */
interface InspectFlags {
  json?: boolean;
  timeout?: number;
  failOn?: string;
}

/** Registers `secpolicy inspect`. */
export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description(
      "Connect to a socket and report who listens there: process, user, groups, program, label, container, and the socket file's owner, mode and directory findings.",
    )
    .argument('<socket-path>', 'the socket file, or @name for an abstract socket')
    .option('--json', 'print the report as JSON')
    .option('--timeout <ms>', 'give up connecting after this many milliseconds', milliseconds, DEFAULT_TIMEOUT)
    .addOption(new Option('--fail-on <severity>', 'exit 1 when any finding is at or above this severity').choices([...SEVERITIES]))
    .action(async (path: string, flags: InspectFlags) => {
      const report = await inspect(path, { ...(flags.timeout !== undefined && { timeout: flags.timeout }) });
      process.stdout.write(flags.json ? json(report) : render(report, colorsFor(process.stdout), widthOf(process.stdout)));
      if (flags.failOn !== undefined) {
        const bar = severityRank(flags.failOn);
        if (report.findings.some((f) => severityRank(f.severity) >= bar)) process.exitCode = 1;
      }
    });
}

/** The human report: aligned fields, then the findings as a table. */
export function render(r: PeerReport, colors: Colors, width: number): string {
  const missing = (name: string): string | undefined => {
    const why = r.unavailable[name];
    return why === undefined ? undefined : `- (${why})`;
  };
  const dim = (text: string, c: Colors) => (text.startsWith('- (') ? c.dim(text) : text);
  const list: Field[] = [
    ['socket', r.abstract ? `${r.path} (abstract)` : r.path],
    ['pid', r.pid === 0 ? '0 (not visible from our pid namespace)' : r.pid],
    ['user', formatId(r.uid, r.user)],
    ['group', formatId(r.gid, r.group)],
    ['groups', r.groups.length ? r.groups.map((g) => formatId(g.gid, g.name)).join(', ') : (missing('groups') ?? 'none'), dim],
    ['program', r.program ?? missing('program'), dim],
    ['label', r.label ?? missing('label'), dim],
    ['container', r.container === undefined ? undefined : r.container === null ? 'none' : `${r.container.runtime} ${r.container.id}`],
    ['file owner', r.owner && formatId(r.owner.uid, r.owner.user)],
    ['file group', r.owner && formatId(r.owner.gid, r.owner.group)],
    ['file mode', r.mode === undefined ? undefined : formatMode(r.mode)],
  ];
  let out = fields(list, { width, colors });
  if (r.findings.length === 0) return `${out}\n${colors.green('no findings')}\n`;
  out += `\n${table(
    [
      { header: 'SEVERITY', value: (f) => f.severity, style: (t, f, c) => severityStyle(f.severity, c)(t) },
      { header: 'FINDING', value: (f) => f.code },
      { header: 'MESSAGE', value: (f) => f.message },
    ],
    r.findings,
    { width, colors },
  )}`;
  return out;
}
