/** `secpolicy check --policy <file> <path>`: verify a server against a policy file. */
import type { Command } from 'commander';
import { dial } from '../../audit/index.js';
import { escapeText } from '../../escape.js';
import { loadPolicy } from '../../policy/index.js';
import { DEFAULT_TIMEOUT, type Decision, type Policy } from '../../policy/index.js';
import { resultNames } from '../../policy/index.js';
import { milliseconds } from '../args.js';
import { colorsFor, fields, formatId, json, table, widthOf, wrap, type Colors } from '../output.js';

/** Options of the check command as commander parses them. */
interface CheckFlags {
  policy: string;
  json?: boolean;
  timeout?: number;
}

/** Registers `secpolicy check`. */
export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('Connect to a socket and verify the server listening there against a policy file. Exit 0 allowed, 1 denied, 2 error.')
    .argument('<socket-path>', 'the socket file, or @name for an abstract socket')
    .requiredOption('--policy <file>', 'the policy file (YAML or JSON) the server must pass')
    .option('--json', 'print the decision as JSON')
    .option('--timeout <ms>', 'bound on connecting and verifying, in milliseconds', milliseconds, DEFAULT_TIMEOUT)
    .action(async (path: string, flags: CheckFlags) => {
      const policy = await loadPolicy(flags.policy);
      const { path: shown, decision, server } = await verify(path, policy, flags.timeout ?? DEFAULT_TIMEOUT);
      const view = summary(shown, decision, server);
      process.stdout.write(flags.json ? json(view) : render(view, colorsFor(process.stdout), widthOf(process.stdout)));
      if (!decision.allowed) process.exitCode = 1;
    });
}

/**
 * Applies the policy to the server as a client does (the `perms` rule checks the socket
 * file at `path`); anything that prevents a verdict stays an error (exit 2).
 */
async function verify(
  path: string,
  policy: Policy,
  timeout: number,
): Promise<{ path: string; decision: Decision; server: Record<string, unknown> }> {
  const dialed = await dial(path, timeout);
  try {
    const decision = await policy.apply(dialed.socket, { side: 'client', timeout, ...(!dialed.abstract && { socketPath: dialed.path }) });
    // Read what the report shows while the connection still pins the server process.
    return { path: dialed.path, decision, server: decision.peer.toJSON() };
  } finally {
    dialed.socket.destroy();
  }
}

/** The `--json` shape of `secpolicy check`. */
export interface CheckReport {
  path: string;
  allowed: boolean;
  result: number;
  /** Names of the failed flags, e.g. `["UID", "PROGRAM"]`. */
  flags: string[];
  failures: Decision['failures'];
  server: Record<string, unknown>;
}

function summary(path: string, d: Decision, server: Record<string, unknown>): CheckReport {
  return { path, allowed: d.allowed, result: d.result, flags: resultNames(d.result), failures: d.failures, server };
}

function render(r: CheckReport, colors: Colors, width: number): string {
  const s = r.server;
  const who = [`pid ${s.pid}`, `uid ${formatId(s.uid as number, s.user as string | undefined)}`, s.program && `program ${s.program}`]
    .filter(Boolean)
    .join(', ');
  const verdict = r.allowed ? colors.green('allowed') : colors.red('denied');
  const head = `${wrap(`${r.allowed ? 'allowed' : 'denied'}: ${escapeText(r.path)}`, width)
    .join('\n')
    .replace(/^\w+/, verdict)}\n`;
  const details = fields(
    [
      ['server', who],
      ['failed', r.allowed ? undefined : r.flags.join(', ')],
    ],
    { width, colors },
  );
  if (r.allowed) return head + details;
  return `${head}${details}\n${table(
    [
      { header: 'RULE', value: (f) => f.rule },
      { header: 'WHY', value: (f) => f.message },
    ],
    r.failures,
    { width, colors },
  )}`;
}
