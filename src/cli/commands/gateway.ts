/** `secpolicy gateway`: an HTTP gateway that decides every request by who sent it. */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { ErrorCode, SecpolicyError } from '../../errors.js';
import { closeGateway, LocalCount, openGateway, parseGatewayPolicy, reloadGateway, reopenGatewayLog } from '../../gateway/index.js';
import { readPolicyText } from '../../policy/index.js';
import { escapeText } from '../../escape.js';
import { derive } from '../../gateway/index.js';
import { milliseconds } from '../args.js';
import { LISTEN_HELP, listenFlag, stopSignal, supervisor } from '../daemon.js';
import { defaultWorkers, gatewayGroup, MAX_WORKERS } from '../gateway-group.js';
import { describePolicy, operatorSignals } from '../operate.js';
import { formatMode } from '../output.js';
import { idOrName, ownership, targetProblem } from '../socket-flags.js';

/** Options of the gateway command as commander parses them. */
interface GatewayFlags {
  listen?: string;
  to?: string;
  policy: string;
  check?: boolean;
  mode: number;
  log?: string;
  logDeniedOnly?: boolean;
  metrics?: string;
  metricsMode: number;
  grace: number;
  handshakeTimeout?: number;
  owner?: string;
  group?: string;
  allowInsecureDirectory?: boolean;
  workers: number;
}

/** A commander parser for a socket file mode written in octal (`0660`, `660`). */
function octalMode(value: string): number {
  if (!/^0?[0-7]{3}$/.test(value)) throw new InvalidArgumentError('expected an octal mode such as 0660');
  return Number.parseInt(value, 8);
}

/** A commander parser for `--workers`: a count of processes, or `auto`. */
function workerCount(value: string): number {
  if (value === 'auto') return defaultWorkers();
  const n = /^[1-9][0-9]*$/.test(value) ? Number(value) : NaN;
  if (!(n <= MAX_WORKERS)) throw new InvalidArgumentError(`expected auto or a number of processes from 1 to ${MAX_WORKERS}`);
  return n;
}

/** Registers `secpolicy gateway`. */
export function registerGateway(program: Command): void {
  program
    .command('gateway')
    .description(
      'Listen on a new socket and forward the HTTP requests a gateway policy allows to an existing socket (such as docker.sock). Stops on SIGTERM or SIGINT; SIGHUP reloads the policy file, SIGUSR1 reopens the log file.',
    )
    .option('--listen <path>', `${LISTEN_HELP} (required unless --check)`)
    .option('--to <path>', 'the socket file of the HTTP service behind the gateway (required unless --check)')
    .requiredOption('--policy <file>', 'the gateway policy file (YAML or JSON)')
    .option('--check', 'validate the policy file (users and groups it names must exist) and exit: 0 valid, 2 invalid')
    .addOption(new Option('--mode <octal>', 'mode of the socket file the gateway creates').argParser(octalMode).default(0o600, '0600'))
    .option('--log <file>', 'decision log, one JSON object per request per line: - for stdout, or a file to append to')
    .option('--log-denied-only', 'log only denials (in audit mode, what would have been denied)')
    .option('--metrics <path>', 'a socket file to create that answers GET /metrics in the Prometheus text format')
    .addOption(new Option('--metrics-mode <octal>', 'mode of the metrics socket file').argParser(octalMode).default(0o600, '0600'))
    .option('--grace <ms>', 'on SIGTERM, how long requests in progress may finish before they are cut', milliseconds, 10000)
    .option('--handshake-timeout <ms>', 'bound on verifying one client connection', milliseconds)
    .option('--owner <user>', 'owner of the socket file the gateway creates (name or uid)')
    .option('--group <group>', 'group of the socket file the gateway creates (name or gid)')
    .option('--allow-insecure-directory', 'create the socket in a directory others could write to (they could replace it)')
    .addOption(
      new Option(
        '--workers <n>',
        'processes serving the socket, each verifying the connections it accepts: a number, or auto (one per CPU this process may use)',
      )
        .argParser(workerCount)
        .default(defaultWorkers(), 'auto'),
    )
    .action(async (flags: GatewayFlags) => {
      const text = await readPolicyText(flags.policy);
      const policy = parseGatewayPolicy(text, { source: flags.policy, resolveNames: true });
      if (flags.check) {
        // What start reads besides the file: the signing key (no daemon is asked).
        derive(policy, undefined);
        return void process.stdout.write(`${flags.policy}: valid: ${describePolicy(policy)}\n`);
      }
      if (flags.listen === undefined || flags.to === undefined)
        throw new SecpolicyError(ErrorCode.INVALID_ARG, 'gateway: --listen and --to are required (unless --check)');
      const say = (line: string): void => void process.stderr.write(`secpolicy gateway: ${line}\n`);
      // An unknown --owner or --group is an error before anything listens.
      ownership(flags.owner, flags.group);
      const listen = listenFlag(flags.listen);
      const daemon = supervisor(say);
      // Connections per uid limited: the first process counts them for every process.
      const count = flags.workers > 1 && policy.limits.connectionsPerUid !== undefined ? new LocalCount() : undefined;
      const group =
        flags.workers > 1
          ? gatewayGroup({
              workers: flags.workers,
              policyFile: flags.policy,
              text,
              readText: () => readPolicyText(flags.policy),
              target: flags.to,
              ...(flags.log !== undefined && { log: flags.log }),
              logDeniedOnly: flags.logDeniedOnly === true,
              ...(flags.handshakeTimeout !== undefined && { handshakeTimeout: flags.handshakeTimeout }),
              metrics: flags.metrics !== undefined,
              grace: flags.grace,
              say,
              ...(count !== undefined && { count }),
            })
          : undefined;
      const server = await openGateway(
        {
          listen,
          target: flags.to,
          policy,
          mode: flags.mode,
          ...(flags.log !== undefined && { log: flags.log }),
          ...(flags.logDeniedOnly && { logDeniedOnly: true }),
          ...(flags.metrics !== undefined && { metrics: flags.metrics, metricsMode: flags.metricsMode }),
          ...(flags.handshakeTimeout !== undefined && { handshakeTimeout: flags.handshakeTimeout }),
          ...(flags.allowInsecureDirectory && { allowInsecureDirectory: true }),
          ...(flags.owner !== undefined && { owner: idOrName(flags.owner) }),
          ...(flags.group !== undefined && { group: idOrName(flags.group) }),
        },
        group === undefined ? {} : { metricsText: (own) => group.metricsText(own), ...(count !== undefined && { count }) },
      );
      if (group !== undefined) {
        try {
          await group.start(server);
        } catch (e) {
          await closeGateway(server, { grace: 0 });
          throw e;
        }
      }
      const where =
        typeof listen === 'string' ? `${listen} (mode ${formatMode(flags.mode)})` : `the socket systemd passed (${flags.listen})`;
      const what = describePolicy(policy);
      say(`listening on ${where}, forwarding to ${flags.to}: ${what}${group ? `; ${flags.workers} processes` : ''}`);
      const problem = targetProblem(flags.to);
      // Not fatal: the daemon may start later; until then each allowed request gets a 502.
      if (problem) say(escapeText(`warning: target ${flags.to} ${problem}; allowed requests fail until it listens`));
      if (flags.metrics !== undefined) say(`metrics on ${flags.metrics} (mode ${formatMode(flags.metricsMode)})`);
      // Kept while stopping too: a SIGHUP then is refused and said, instead of ending the process.
      operatorSignals(
        group ?? { reload: () => reloadGateway(server, flags.policy), reopen: () => reopenGatewayLog(server) },
        flags.policy,
        say,
      );
      daemon.ready(`forwarding to ${flags.to}: ${what}`);
      const signal = await stopSignal();
      daemon.stopping();
      // Whatever is still open a second after the grace period (closeGateway cuts it all
      // at the end of the grace period), the process ends.
      setTimeout(() => {
        say('stopped: cut what was still open');
        process.exit(0);
      }, flags.grace + 1000).unref();
      const closing = Promise.all([closeGateway(server, { grace: flags.grace }), group?.stop()]);
      say(`${signal}: no new connections; requests in progress have ${flags.grace} ms to finish`);
      await closing;
      say('stopped');
    });
}
