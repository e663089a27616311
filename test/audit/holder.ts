/**
 * A python3 process that binds and listens on the sockets it is given (stream or
 * seqpacket, by path or abstract name, with a mode), prints READY and holds them until
 * its stdin closes: a listener the test did not write, optionally run as another user.
 */
import { once } from 'node:events';
import { run, type RunAs } from '../helpers/index.js';

/** One socket for the holder to listen on. */
export interface HeldSocket {
  /** A path, or `@name` for an abstract name. */
  address: string;
  kind?: 'stream' | 'seqpacket';
  /** chmod after bind (paths only). */
  mode?: number;
}

const SCRIPT = `
import json, os, socket, sys
socks = []
for s in json.loads(sys.argv[1]):
    kind = socket.SOCK_SEQPACKET if s.get('kind') == 'seqpacket' else socket.SOCK_STREAM
    sock = socket.socket(socket.AF_UNIX, kind)
    addr = s['address']
    sock.bind('\\0' + addr[1:] if addr.startswith('@') else addr)
    if 'mode' in s:
        os.chmod(addr, s['mode'])
    sock.listen(16)
    socks.append(sock)
print('READY', os.getpid(), flush=True)
sys.stdin.read()
`;

/** Starts a holder; resolves once it listens. Stop it with `stop()` (closes its stdin, then kills). */
export async function holdSockets(sockets: HeldSocket[], as?: RunAs): Promise<{ pid: number; stop: () => Promise<void> }> {
  const child = run('/usr/bin/python3', ['-c', SCRIPT, JSON.stringify(sockets)], as ? { as } : {});
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.stdin?.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
    await once(child, 'close');
    clearTimeout(timer);
  };
  // Read through 'data' (not an async iterator, which would close the pipe on return) up
  // to the whole line, so that a pid split across chunks is never taken half-read.
  const pid = await new Promise<number | undefined>((resolve) => {
    let out = '';
    const onData = (chunk: Buffer): void => {
      out += chunk;
      const m = /READY (\d+)\n/.exec(out);
      if (m) {
        child.stdout!.off('data', onData);
        resolve(Number(m[1]));
      }
    };
    child.stdout!.on('data', onData);
    child.once('close', () => resolve(undefined));
  });
  if (pid !== undefined) return { pid, stop };
  await stop();
  const { stderr } = await child.output();
  throw new Error(`socket holder failed to start: ${stderr.trim()}`);
}
