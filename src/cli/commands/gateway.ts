/** `secpolicy gateway`: an HTTP gateway that decides every request by who sent it. */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { closeGateway, createGateway } from '../../gateway/gateway.js';
import { loadGatewayPolicy } from '../../gateway/policy.js';
import { milliseconds } from '../args.js';
import { LISTEN_HELP, listenFlag, stopSignal, supervisor } from '../daemon.js';
import { formatMode } from '../output.js';

/** Options of the gateway command as commander parses them. */
interface GatewayFlags {
  listen: string;
  to: string;
  policy: string;
  mode: number;
  log?: string;
  grace: number;
  handshakeTimeout?: number;
}

/** A commander parser for a socket file mode written in octal (`0660`, `660`). */
function octalMode(value: string): number {
  if (!/^0?[0-7]{3}$/.test(value)) throw new InvalidArgumentError('expected an octal mode such as 0660');
  return Number.parseInt(value, 8);
}

/** Registers `secpolicy gateway`. */
export function registerGateway(program: Command): void {
  program
    .command('gateway')
    .description(
      'Listen on a new socket and forward the HTTP requests a gateway policy allows to an existing socket (such as docker.sock). Stops on SIGTERM or SIGINT.',
    )
    .requiredOption('--listen <path>', LISTEN_HELP)
    .requiredOption('--to <path>', 'the socket file of the HTTP service behind the gateway')
    .requiredOption('--policy <file>', 'the gateway policy file (YAML or JSON)')
    .addOption(new Option('--mode <octal>', 'mode of the socket file the gateway creates').argParser(octalMode).default(0o600, '0600'))
    .option('--log <file>', 'decision log, one JSON object per request per line: - for stdout, or a file to append to')
    .option('--grace <ms>', 'on SIGTERM, how long requests in progress may finish before they are cut', milliseconds, 10000)
    .option('--handshake-timeout <ms>', 'bound on verifying one client connection', milliseconds)
    .action(async (flags: GatewayFlags) => {
      const policy = await loadGatewayPolicy(flags.policy);
      const say = (line: string): void => void process.stderr.write(`secpolicy gateway: ${line}\n`);
      const listen = listenFlag(flags.listen);
      const daemon = supervisor(say);
      const server = await createGateway({
        listen,
        target: flags.to,
        policy,
        mode: flags.mode,
        ...(flags.log !== undefined && { log: flags.log }),
        ...(flags.handshakeTimeout !== undefined && { handshakeTimeout: flags.handshakeTimeout }),
      });
      const where =
        typeof listen === 'string' ? `${listen} (mode ${formatMode(flags.mode)})` : `the socket systemd passed (${flags.listen})`;
      const what = `${policy.rules.length} rule(s), ${policy.mode} mode${policy.api ? `, ${policy.api} API` : ''}`;
      say(`listening on ${where}, forwarding to ${flags.to}: ${what}`);
      daemon.ready(`forwarding to ${flags.to}: ${what}`);
      const signal = await stopSignal();
      daemon.stopping();
      // Whatever is still open a second after the grace period (closeGateway cuts it all
      // at the end of the grace period), the process ends.
      setTimeout(() => {
        say('stopped: cut what was still open');
        process.exit(0);
      }, flags.grace + 1000).unref();
      const closing = closeGateway(server, { grace: flags.grace });
      say(`${signal}: no new connections; requests in progress have ${flags.grace} ms to finish`);
      await closing;
      say('stopped');
    });
}
