/** `secpolicy convert docker-socket-proxy`: another tool's settings as a gateway policy. */
import type { Command } from 'commander';
import { invalidArg } from '../../errors.js';
import { convertDockerSocketProxy } from '../../gateway/index.js';

/** Options of the convert command as commander parses them. */
interface ConvertFlags {
  who?: string;
  name?: string;
}

/** Registers `secpolicy convert`. */
export function registerConvert(program: Command): void {
  const convert = program.command('convert').description("Print a gateway policy equivalent to another tool's settings.");
  convert
    .command('docker-socket-proxy')
    .summary('its settings as a gateway policy')
    .description(
      "Read docker-socket-proxy's environment variables (CONTAINERS, IMAGES, POST, ALLOW_START, ...; EVENTS, PING and VERSION on by default) and print the equivalent gateway policy (YAML).",
    )
    .argument('[VAR=value...]', 'settings given here instead of (over) the environment')
    .option('--who <json>', "the rule's who, a policy document as JSON", '{}')
    .option('--name <name>', "the rule's name", 'docker-socket-proxy')
    .action((assignments: string[], flags: ConvertFlags) => {
      const env: Record<string, string | undefined> = { ...process.env };
      for (const a of assignments) {
        const eq = a.indexOf('=');
        if (eq < 1) throw invalidArg('VAR=value', 'a setting such as CONTAINERS=1', a);
        env[a.slice(0, eq)] = a.slice(eq + 1);
      }
      let who: unknown;
      try {
        who = JSON.parse(flags.who ?? '{}');
      } catch (e) {
        throw invalidArg('--who', `a policy document as JSON (${(e as Error).message})`, flags.who);
      }
      if (typeof who !== 'object' || who === null) throw invalidArg('--who', 'a policy document as JSON, such as {"user":"ci"}', flags.who);
      process.stdout.write(convertDockerSocketProxy(env, { who, ...(flags.name !== undefined && { name: flags.name }) }));
    });
}
