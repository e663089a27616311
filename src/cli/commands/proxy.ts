/** `secpolicy proxy`: a policy-enforcing proxy in front of an existing socket. */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { loadPolicy } from '../../policy/file.js';
import { closeProxy, createProxy, proxyDataPath } from '../../proxy/proxy.js';
import { milliseconds } from '../args.js';
import { LISTEN_HELP, listenFlag, supervisor } from '../daemon.js';
import { formatMode } from '../output.js';

/** Options of the proxy command as commander parses them. */
interface ProxyFlags {
  listen: string;
  to: string;
  policy: string;
  targetPolicy?: string;
  mode: number;
  grace: number;
  handshakeTimeout?: number;
}

/** A commander parser for a socket file mode written in octal (`0660`, `660`). */
function octalMode(value: string): number {
  if (!/^0?[0-7]{3}$/.test(value)) throw new InvalidArgumentError('expected an octal mode such as 0660');
  return Number.parseInt(value, 8);
}

/** Registers `secpolicy proxy`. */
export function registerProxy(program: Command): void {
  program
    .command('proxy')
    .description(
      'Listen on a new socket and forward only the clients that pass a policy to an existing socket. Stops on SIGTERM or SIGINT.',
    )
    .requiredOption('--listen <path>', LISTEN_HELP)
    .requiredOption('--to <path>', 'the socket file of the service behind the proxy')
    .requiredOption('--policy <file>', 'the policy file (YAML or JSON) every client must pass')
    .option('--target-policy <file>', 'a policy file the service behind the proxy must pass before a client byte reaches it')
    .addOption(new Option('--mode <octal>', 'mode of the socket file the proxy creates').argParser(octalMode).default(0o600, '0600'))
    .option('--grace <ms>', 'on SIGTERM, how long open connections may finish before they are cut', milliseconds, 5000)
    .option('--handshake-timeout <ms>', 'bound on verifying one client', milliseconds)
    .action(async (flags: ProxyFlags) => {
      const policy = await loadPolicy(flags.policy);
      const targetPolicy = flags.targetPolicy === undefined ? undefined : await loadPolicy(flags.targetPolicy);
      const log = (line: string): void => void process.stderr.write(`secpolicy proxy: ${line}\n`);
      const listen = listenFlag(flags.listen);
      const daemon = supervisor(log);
      const server = await createProxy({
        listen,
        target: flags.to,
        policy,
        ...(targetPolicy && { targetPolicy }),
        mode: flags.mode,
        log,
        ...(flags.handshakeTimeout !== undefined && { handshakeTimeout: flags.handshakeTimeout }),
      });
      const where =
        typeof listen === 'string' ? `${listen} (mode ${formatMode(flags.mode)})` : `the socket systemd passed (${flags.listen})`;
      const data = proxyDataPath(server);
      const via = data.path === 'splice' ? 'splice relay' : `JavaScript streams: ${data.reason}`;
      log(`listening on ${where}, forwarding allowed clients to ${flags.to} (${via})`);
      daemon.ready(`forwarding allowed clients to ${flags.to}`);
      // Only the first signal is ours: a second one ends the process the default way.
      const signal = await new Promise<NodeJS.Signals>((resolve) => {
        const stop = (name: NodeJS.Signals): void => {
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          resolve(name);
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      });
      // Close first, then say so: whoever reads the line may rely on it being true.
      daemon.stopping();
      const closing = closeProxy(server, { grace: flags.grace });
      log(`${signal}: no new connections; open ones have ${flags.grace} ms to finish`);
      await closing;
      log('stopped');
    });
}
