/** `secpolicy explain`: what a gateway policy would answer a request from an identity, by the gateway's own decision code. */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { escapeText } from '../../escape.js';
import { explainRequest, parseIdentity, type Explanation } from '../../gateway/index.js';
import { loadGatewayPolicy } from '../../gateway/index.js';
import { json } from '../output.js';

/** Options of the explain command as commander parses them. */
interface ExplainFlags {
  policy: string;
  as: string;
  body?: string;
  to?: string;
  json?: boolean;
}

/** Registers `secpolicy explain`. */
export function registerExplain(program: Command): void {
  program
    .command('explain')
    .description(
      "Show what a gateway policy would answer a request from an identity, decided by the gateway's own code. Exit 0 forwarded, 1 answered by the gateway (400, 403, 404, 413, 502), 2 error.",
    )
    .argument('<method>', 'the request method, such as GET or POST')
    .argument('<path>', 'the request target, such as /v1.47/containers/json?all=1')
    .requiredOption('--policy <file>', 'the gateway policy file (YAML or JSON)')
    .requiredOption('--as <who>', 'the identity: uid=N[,gid=N][,groups=N:N][,program=/path][,container=NAME]')
    .option('--body <file>', 'the request body (for the endpoints whose bodies the Docker profile checks)')
    .option(
      '--to <socket>',
      'the daemon socket, for what only the daemon knows (container labels, its API version, the effective state of a container or exec)',
    )
    .option('--json', 'print the explanation as JSON')
    .action(async (method: string, path: string, flags: ExplainFlags) => {
      const identity = parseIdentity(flags.as);
      const policy = await loadGatewayPolicy(flags.policy);
      const body = flags.body === undefined ? undefined : readFileSync(flags.body);
      const e = await explainRequest(policy, identity, method.toUpperCase(), path, {
        ...(body !== undefined && { body }),
        ...(flags.to !== undefined && { to: flags.to }),
      });
      process.stdout.write(flags.json ? json(e) : render(e));
      if (e.status !== null || e.connection === 'refused') process.exitCode = 1;
    });
}

function render(e: Explanation): string {
  const head =
    e.connection === 'refused'
      ? 'refused: the connection is closed before any request'
      : e.status !== null
        ? `${e.status === 403 ? 'denied' : 'refused'} (${e.status})`
        : e.allowed
          ? 'allowed: forwarded'
          : 'denied by the rules: forwarded (audit mode)';
  const lines = [
    `${head}: ${escapeText(e.method)} ${escapeText(e.target)}`,
    `  path: ${e.path === null ? '(refused before the rules)' : escapeText(e.path)}`,
    `  rule: ${e.rule ?? '(none matched)'}${e.pattern ? `, pattern "${escapeText(e.pattern)}"` : ''}`,
    ...e.reasons.map((r) => `  why: ${escapeText(r)}`),
    ...e.notEvaluated.map((n) => `  not evaluated: ${n}`),
  ];
  return lines.join('\n') + '\n';
}
