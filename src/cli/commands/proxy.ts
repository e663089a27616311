/** `secpolicy proxy`: a policy-enforcing proxy in front of an existing socket. */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { escapeText } from '../../escape.js';
import { loadPolicy } from '../../policy/index.js';
import { closeProxy, createProxy, proxyDataPath } from '../../proxy/index.js';
import { milliseconds } from '../args.js';
import { LISTEN_HELP, listenFlag, stopSignal, supervisor } from '../daemon.js';
import { formatMode } from '../output.js';
import { idOrName, targetProblem } from '../socket-flags.js';

/** Options of the proxy command as commander parses them. */
interface ProxyFlags {
  listen: string;
  to: string;
  policy: string;
  targetPolicy?: string;
  mode: number;
  grace: number;
  handshakeTimeout?: number;
  allowInsecureDirectory?: boolean;
  owner?: string;
  group?: string;
  quiet?: boolean;
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
    .option('--owner <user>', 'owner of the socket file the proxy creates (name or uid)')
    .option('--group <group>', 'group of the socket file the proxy creates (name or gid)')
    .option('--allow-insecure-directory', 'create the socket in a directory others could write to (they could replace it)')
    .option('-q, --quiet', 'log only denials and failures, not start and stop')
    .action(async (flags: ProxyFlags) => {
      const policy = await loadPolicy(flags.policy);
      const targetPolicy = flags.targetPolicy === undefined ? undefined : await loadPolicy(flags.targetPolicy);
      // createProxy escapes what it logs (peer names, paths); the lines made here escape their paths.
      const log = (line: string): void => void process.stderr.write(`secpolicy proxy: ${line}\n`);
      const status = flags.quiet ? () => {} : log;
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
        ...(flags.owner !== undefined && { owner: idOrName(flags.owner) }),
        ...(flags.group !== undefined && { group: idOrName(flags.group) }),
        ...(flags.allowInsecureDirectory && { allowInsecureDirectory: true }),
      });
      const where =
        typeof listen === 'string' ? `${listen} (mode ${formatMode(flags.mode)})` : `the socket systemd passed (${flags.listen})`;
      const data = proxyDataPath(server);
      const via = data.path === 'splice' ? 'splice relay' : `JavaScript streams: ${data.reason}`;
      status(escapeText(`listening on ${where}, forwarding allowed clients to ${flags.to} (${via})`));
      const problem = targetProblem(flags.to);
      // Not fatal: the service may start later; each client until then is closed.
      if (problem) log(escapeText(`warning: target ${flags.to} ${problem}; allowed clients are closed until it listens`));
      daemon.ready(`forwarding allowed clients to ${flags.to}`);
      const signal = await stopSignal();
      // Close first, then say so: whoever reads the line may rely on it being true.
      daemon.stopping();
      const closing = closeProxy(server, { grace: flags.grace });
      status(`${signal}: no new connections; open ones have ${flags.grace} ms to finish`);
      await closing;
      status('stopped');
    });
}
