/**
 * What `secpolicy gateway` does for its operator besides serving: SIGHUP reloads the
 * policy file, SIGUSR1 reopens the decision log (after logrotate), both reported on stderr.
 */
import type { GatewayPolicy } from '../gateway/index.js';

/** How a policy reads in one line: `3 rule(s), enforce mode, docker API`. */
export function describePolicy(policy: { rules: readonly unknown[]; mode: string; api: string | undefined }): string {
  return `${policy.rules.length} rule(s), ${policy.mode} mode${policy.api ? `, ${policy.api} API` : ''}`;
}

/** What SIGHUP and SIGUSR1 do to a running gateway (of one process or of several). */
export interface Operations {
  /** Reads the policy file again and runs it; rejects, the running policy kept, on any failure. */
  reload(): Promise<GatewayPolicy>;
  /** Reopens the decision log; rejects (still writing to the old file) when it cannot. */
  reopen(): void | Promise<void>;
}

/**
 * Handles SIGHUP and SIGUSR1 for a running gateway until the returned function is called.
 * Reloads run one at a time; a SIGHUP during one reloads once more after it.
 */
export function operatorSignals(ops: Operations, policyFile: string, say: (line: string) => void): () => void {
  let running = false;
  let again = false;
  const reload = async (): Promise<void> => {
    if (running) return void (again = true);
    running = true;
    try {
      do {
        again = false;
        try {
          const policy = await ops.reload();
          say(`SIGHUP: reloaded ${policyFile}: ${describePolicy(policy)}; requests in progress finish under the policy they started with`);
        } catch (e) {
          const code = (e as { code?: unknown }).code;
          say(
            `SIGHUP: reload failed, the running policy stays: ${typeof code === 'string' ? `${code}: ` : ''}${(e as Error).message.replace(/\n/g, ' ')}`,
          );
        }
      } while (again);
    } finally {
      running = false;
    }
  };
  const onHup = (): void => void reload();
  const onUsr1 = (): void => {
    void (async () => {
      try {
        await ops.reopen();
        say('SIGUSR1: decision log reopened');
      } catch (e) {
        say(`SIGUSR1: cannot reopen the decision log, still writing to the old file: ${(e as Error).message}`);
      }
    })();
  };
  process.on('SIGHUP', onHup);
  process.on('SIGUSR1', onUsr1);
  return () => {
    process.off('SIGHUP', onHup);
    process.off('SIGUSR1', onUsr1);
  };
}
